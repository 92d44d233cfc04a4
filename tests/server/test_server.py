"""End-to-end tests of `qllama serve` with the official `openai` package.

Starts real servers on the default model (free ports on 127.0.0.1) and checks
answers against `qllama run` and against each other. Run through
`cargo test --test server` (which sets QLLAMA_BIN), or directly:

    QLLAMA_BIN=target/debug/qllama python3 tests/server/test_server.py
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import openai

BIN = os.environ.get("QLLAMA_BIN", "target/debug/qllama")
# Waits below only guard against a hang; nothing asserts on time.
HANG_GUARD_S = 60


class Server:
    """A `qllama serve` process on a free port."""

    def __init__(self, *args, api_key=None):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="qllama-serve-", suffix=".log", delete=False)
        cmd = [BIN, "serve", "--port", "0", "-t", "1", *args]
        if api_key:
            cmd += ["--api-key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        self.port = None
        deadline = time.monotonic() + HANG_GUARD_S
        while self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qllama serve exited early:\n{self.text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"qllama serve did not start:\n{self.text()}")
            for line in self.text().splitlines():
                if line.startswith("listening on http://"):
                    self.port = int(line.rsplit(":", 1)[1])
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key=api_key or "none", max_retries=0, timeout=HANG_GUARD_S)

    def text(self):
        with open(self.log.name) as f:
            return f.read()

    def raw(self, method, path, body=None, headers=None):
        """(status, headers, parsed JSON or text) of a plain HTTP request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HANG_GUARD_S)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read().decode()
        conn.close()
        try:
            data = json.loads(data)
        except ValueError:
            pass
        return resp.status, dict(resp.getheaders()), data

    def health(self):
        return self.raw("GET", "/health")[2]

    def wait_health(self, pred):
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            h = self.health()
            if pred(h):
                return h
            if time.monotonic() > deadline:
                raise AssertionError(f"health never reached the expected state: {h}")
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(HANG_GUARD_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log.name)


def qllama_run(prompt, n):
    """Greedy `qllama run` output (its trailing newline removed)."""
    out = subprocess.run(
        [BIN, "run", "-p", prompt, "--temp", "0", "-n", str(n), "-t", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=HANG_GUARD_S,
    ).stdout
    assert out.endswith("\n"), out
    return out[:-1]


def chat(client, messages, **kw):
    return client.chat.completions.create(model="tiny-llama2-q8_0", messages=messages, **kw)


def stream_chat(client, messages, **kw):
    """(text, finish_reason, usage) of a streamed chat answer."""
    text, finish, usage = "", None, None
    for chunk in chat(client, messages, stream=True, **kw):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return text, finish, usage


def user(text):
    return [{"role": "user", "content": text}]


PROMPTS = [
    "Once upon a time",
    "The meaning of life is",
    "My favourite food is",
    "In the beginning",
    "A computer is",
    "The cat sat on",
    "Programming in Rust",
    "Tomorrow the weather will be",
]


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Four slots of 1024 tokens; a one-slot server with a key for the
        # rest (its queue holds one request).
        cls.par = Server("--parallel", "4", "--ctx", "4096")
        cls.one = Server("--parallel", "1", "--ctx", "1024", "--queue", "1", api_key="sekrit")

    @classmethod
    def tearDownClass(cls):
        cls.par.stop()
        cls.one.stop()

    def test_models_and_health(self):
        ids = [m.id for m in self.par.client.models.list().data]
        self.assertEqual(ids, ["tiny-llama2-q8_0"])
        self.assertEqual(self.par.health()["status"], "ok")
        status, _, page = self.par.raw("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("/v1/chat/completions", page)

    def test_greedy_chat_equals_qllama_run(self):
        msg = "Hello, who are you?"
        r = chat(self.par.client, user(msg), temperature=0, max_tokens=40)
        # Meta's Llama 2 chat format, written out independently of the server.
        expected = qllama_run(f"[INST] {msg} [/INST]", 40)
        # A chat answer drops the leading space of its first piece.
        self.assertEqual(r.choices[0].message.content, expected.removeprefix(" "))
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertGreater(r.usage.completion_tokens, 0)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

        text, finish, usage = stream_chat(
            self.par.client, user(msg), temperature=0, max_tokens=40, stream_options={"include_usage": True}
        )
        self.assertEqual(text, r.choices[0].message.content)
        self.assertEqual(finish, r.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, r.usage.completion_tokens)

    def test_greedy_completion_equals_qllama_run(self):
        for prompt in PROMPTS[:3]:
            r = self.par.client.completions.create(model="tiny-llama2-q8_0", prompt=prompt, temperature=0, max_tokens=30)
            self.assertEqual(r.choices[0].text, qllama_run(prompt, 30), prompt)

    def test_max_tokens_gives_length(self):
        r = chat(self.par.client, user("Tell me a long story."), temperature=0, max_tokens=3, extra_body={"ignore_eos": True})
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 3)
        r = chat(self.par.client, user("Tell me a story."), temperature=0, max_completion_tokens=2)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 2)

    def test_stop_strings_across_tokens(self):
        c = self.par.client
        full = c.completions.create(model="tiny-llama2-q8_0", prompt=PROMPTS[0], temperature=0, max_tokens=30).choices[0].text
        # A stop string that starts inside one word and ends in the next, so
        # it spans a token boundary.
        i = full.index(" ", 4)
        stop = full[i - 2 : i + 2]
        expected = full[: full.index(stop)]
        r = c.completions.create(prompt=PROMPTS[0], model="tiny-llama2-q8_0", temperature=0, max_tokens=30, stop=[stop, "zzzz"])
        self.assertEqual(r.choices[0].text, expected)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        streamed = "".join(
            ch.choices[0].text
            for ch in c.completions.create(
                prompt=PROMPTS[0], model="tiny-llama2-q8_0", temperature=0, max_tokens=30, stop=stop, stream=True
            )
        )
        self.assertEqual(streamed, expected)
        self.assertNotIn(stop, streamed)

    def test_seed_reproduces_sampled_answer(self):
        kw = dict(temperature=1.0, top_p=1.0, max_tokens=40, extra_body={"top_k": 0, "min_p": 0.0})
        a = chat(self.par.client, user("Write a poem."), seed=1234, **kw).choices[0].message.content
        b = chat(self.par.client, user("Write a poem."), seed=1234, **kw).choices[0].message.content
        c = chat(self.par.client, user("Write a poem."), seed=99, **kw).choices[0].message.content
        greedy = chat(self.par.client, user("Write a poem."), temperature=0, max_tokens=40).choices[0].message.content
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)
        self.assertTrue(a != greedy or c != greedy)

    def test_bad_inputs(self):
        s = self.par
        cases = [
            ("malformed JSON", "/v1/chat/completions", '{"messages": [', 400),
            ("not an object", "/v1/chat/completions", "[1, 2]", 400),
            ("wrong type", "/v1/chat/completions", {"messages": user("hi"), "temperature": "hot"}, 400),
            ("messages not a list", "/v1/chat/completions", {"messages": "hi"}, 400),
            ("bad role", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400),
            ("n = 2", "/v1/chat/completions", {"messages": user("hi"), "n": 2}, 400),
            ("max_tokens 0", "/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400),
            ("missing prompt", "/v1/completions", {"max_tokens": 3}, 400),
            ("unknown model", "/v1/chat/completions", {"model": "gpt-9", "messages": user("hi")}, 404),
            ("too large", "/v1/completions", {"prompt": "x" * (3 << 20)}, 413),
        ]
        for name, path, body, status in cases:
            got, _, data = s.raw("POST", path, body)
            self.assertEqual(got, status, f"{name}: {data}")
            self.assertIsInstance(data["error"]["message"], str, name)
            self.assertTrue(data["error"]["message"], name)

        # A prompt longer than a slot's context (1024 here) says how long it
        # is and what fits.
        got, _, data = s.raw("POST", "/v1/completions", {"prompt": "hello " * 1500})
        self.assertEqual(got, 400)
        self.assertRegex(data["error"]["message"], r"prompt is 1\d{3} tokens.*at most 1023")

        # Through the openai package, as its users see them.
        with self.assertRaises(openai.NotFoundError):
            s.client.chat.completions.create(model="gpt-9", messages=user("hi"))
        with self.assertRaises(openai.BadRequestError):
            s.client.chat.completions.create(model="tiny-llama2-q8_0", messages=user("hi"), n=3)
        # The server still answers after all that.
        self.assertEqual(s.health()["slots_processing"], 0)
        chat(s.client, user("hi"), max_tokens=2)

    def test_api_key(self):
        s = self.one
        self.assertEqual(s.raw("GET", "/v1/models")[0], 401)
        self.assertEqual(s.raw("GET", "/v1/models", headers={"Authorization": "Bearer sekriT"})[0], 401)
        self.assertEqual(s.raw("GET", "/v1/models", headers={"Authorization": "Bearer sekrit"})[0], 200)
        bad = openai.OpenAI(base_url=s.base + "/v1", api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.chat.completions.create(model="tiny-llama2-q8_0", messages=user("hi"))
        self.assertEqual(s.client.models.list().data[0].id, "tiny-llama2-q8_0")

    def test_disconnect_frees_slot_and_full_queue_is_503(self):
        s = self.one
        before = s.health()
        # A stream that would run to the end of the slot's context...
        stream = chat(s.client, user("Go on forever."), stream=True, max_tokens=100000, extra_body={"ignore_eos": True})
        got = [next(iter(stream)) for _ in range(3)]
        self.assertEqual(len(got), 3)
        self.assertEqual(s.health()["slots_processing"], 1)
        # ...one waiting in the queue, and no room for a third.
        waiting = chat(s.client, user("Wait."), stream=True, max_tokens=100000, extra_body={"ignore_eos": True})
        s.wait_health(lambda h: h["queued"] == 1)
        status, headers, data = s.raw(
            "POST", "/v1/completions", {"prompt": "hi"}, headers={"Authorization": "Bearer sekrit"}
        )
        self.assertEqual(status, 503, data)
        self.assertIn("retry-after", {k.lower() for k in headers})
        # Closing the first stream frees its slot at once: the waiting one
        # gets it, long before the first could have reached its length.
        stream.close()
        s.wait_health(lambda h: h["requests_cancelled"] == before["requests_cancelled"] + 1 and h["queued"] == 0)
        next(iter(waiting))
        waiting.close()
        h = s.wait_health(lambda h: h["slots_idle"] == 1)
        self.assertEqual(h["requests_cancelled"], before["requests_cancelled"] + 2)
        self.assertEqual(h["requests_done"], before["requests_done"])
        r = chat(s.client, user("hi"), max_tokens=5, temperature=0)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))

    def test_ten_turn_chat_reuses_prompt(self):
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        prev_prompt = 0
        for turn in range(10):
            messages.append({"role": "user", "content": f"Question number {turn + 1}: what comes next?"})
            r = chat(self.par.client, messages, temperature=0, max_tokens=20)
            u = r.usage
            cached = u.prompt_tokens_details.cached_tokens
            if turn >= 1:
                # Everything up to the previous answer is reused.
                self.assertGreaterEqual(cached, prev_prompt, f"turn {turn + 1}: {u}")
            if turn >= 4:
                self.assertGreater(cached / u.prompt_tokens, 0.8, f"turn {turn + 1}: {u}")
            prev_prompt = u.prompt_tokens
            messages.append({"role": "assistant", "content": r.choices[0].message.content})
        # The answer built on reused cache equals one evaluated from scratch
        # (the one-slot server has never seen this conversation).
        last = messages[:-1]
        fresh = chat(self.one.client, last, temperature=0, max_tokens=20)
        self.assertLess(fresh.usage.prompt_tokens_details.cached_tokens, 10)
        self.assertEqual(fresh.choices[0].message.content, messages[-1]["content"])

    def test_eight_concurrent_streams_on_four_slots(self):
        c = self.par.client
        kw = dict(temperature=0, max_tokens=48)
        alone = [stream_chat(c, user(p), **kw)[:2] for p in PROMPTS]
        results = [None] * len(PROMPTS)
        errors = []

        def worker(i):
            try:
                results[i] = stream_chat(c, user(PROMPTS[i]), **kw)[:2]
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD_S)
        self.assertEqual(errors, [])
        for p, a, r in zip(PROMPTS, alone, results):
            self.assertEqual(r, a, p)
        # Distinct prompts gave distinct answers (the check is not vacuous).
        self.assertGreater(len({a[0] for a in alone}), 4)


class ShutdownTest(unittest.TestCase):
    def test_sigterm_lets_running_stream_finish(self):
        s = Server("--parallel", "2", "--grace", "30")
        try:
            stream = s.client.completions.create(
                model="tiny-llama2-q8_0", prompt="Once", temperature=0, max_tokens=200, stream=True, extra_body={"ignore_eos": True}
            )
            it = iter(stream)
            text = next(it).choices[0].text
            s.proc.send_signal(signal.SIGTERM)
            finish = None
            for ch in it:
                text += ch.choices[0].text
                finish = ch.choices[0].finish_reason or finish
            self.assertEqual(finish, "length")
            self.assertEqual(s.proc.wait(HANG_GUARD_S), 0, s.text())
            self.assertIn("shutting down", s.text())
        finally:
            s.stop()


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    n = result.testsRun
    bad = len(result.failures) + len(result.errors)
    print(f"{n - bad} passed, {bad} failed")
    sys.exit(1 if bad or n == 0 else 0)
