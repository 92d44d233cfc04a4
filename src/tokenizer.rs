//! Llama SentencePiece BPE tokenizer built from GGUF metadata.
