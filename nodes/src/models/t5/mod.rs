//! The T5 v1.1 encoder used as LTX-Video's text encoder, and its tokenizer.
