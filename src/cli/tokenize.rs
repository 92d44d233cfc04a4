//! `qllama tokenize`: the tokens of a text, like llama.cpp's llama-tokenize.

use std::path::PathBuf;

use anyhow::Context;

use crate::gguf::GgufFile;
use crate::tokenizer::{TokenType, Tokenizer};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["prompt", "file"])))]
pub struct Args {
    /// The GGUF model file whose tokenizer to use.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// The text to tokenize.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// A UTF-8 file holding the text to tokenize.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Print only the ids, as a list: [1, 450, ...].
    #[arg(long)]
    pub ids: bool,
    /// Do not add BOS, even when the model asks for it.
    #[arg(long)]
    pub no_bos: bool,
    /// Read control-token text such as `<s>` as those tokens (llama-tokenize's
    /// default); without it the text is tokenized as plain text, as
    /// SentencePiece does.
    #[arg(long)]
    pub special: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = match (args.prompt, &args.file) {
        (Some(p), _) => p,
        (None, Some(f)) => read_utf8(f)?,
        (None, None) => anyhow::bail!("give the text with -p TEXT or -f FILE"),
    };
    let file = GgufFile::open(&args.model)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let add_bos = tok.add_bos() && !args.no_bos;
    let ids = if args.special { tok.encode_special(&text, add_bos)? } else { tok.encode(&text, add_bos)? };
    if args.ids {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("[{}]", list.join(", "));
    } else {
        for &id in &ids {
            println!("{id:6} -> '{}'", display_piece(&tok, id));
        }
    }
    Ok(())
}

/// A file's text, with a clear error for bytes that are not UTF-8.
fn read_utf8(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        anyhow::anyhow!("{}: not valid UTF-8 (invalid byte at offset {at})", path.display())
    })
}

/// How llama-tokenize shows a token: its text, control tokens by name, and
/// a byte token as its character when it is one (ASCII), else `<0xNN>`.
fn display_piece(tok: &Tokenizer, id: u32) -> String {
    match tok.token_type(id) {
        Some(TokenType::Byte(b)) if b.is_ascii() => char::from(b).to_string(),
        Some(TokenType::Normal | TokenType::UserDefined | TokenType::Unused) => tok.piece_text(id).to_owned(),
        _ => tok.piece(id).to_owned(),
    }
}
