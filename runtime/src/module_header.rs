//! Whether a file starts like a module wasmjob can run: the check a submitter makes before it
//! uploads anything, so that an empty file, a component or something that is not WebAssembly
//! at all is refused at once, naming the file, instead of failing every task later.
//!
//! It reads the header only: the binary magic and version, or, for WebAssembly text (which
//! the workers compile as well), that the first thing past whitespace and comments is a `(`.
//! Validating the whole module is the workers' compiler's work: it needs their engine's
//! settings, which a submitter does not know, and a pass over all of the module; a module that
//! starts well but does not compile fails its tasks as fatal (`compilation error: …`).

/// How many of a file's first bytes [`check`] looks at: the binary header needs 8, text may
/// open with a long comment.
pub const HEAD_BYTES: usize = 64 << 10;

/// The binary format's first four bytes.
const MAGIC: &[u8; 4] = b"\0asm";

/// What is wrong with a module file's start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The file has no bytes.
    #[error("the file is empty")]
    Empty,
    /// The binary header is shorter than its 8 bytes.
    #[error("it ends inside the 8-byte WebAssembly header")]
    Truncated,
    /// A component (component-model binary or text), not a core module.
    #[error(
        "it is a WebAssembly component, not a module: tasks are WASI preview-1 commands (built \
         for wasm32-wasip1)"
    )]
    Component,
    /// A binary header with a version other than 1.
    #[error("it is WebAssembly binary version {0}; only version 1 modules run")]
    Version(u16),
    /// Neither the binary magic nor WebAssembly text.
    #[error(
        "it starts neither with the WebAssembly magic bytes \\0asm nor with WebAssembly text \
         (an opening parenthesis)"
    )]
    NotWasm,
}

/// Checks `head`, the first [`HEAD_BYTES`] of a module file (or all of it, if shorter).
pub fn check(head: &[u8]) -> Result<(), HeaderError> {
    if head.is_empty() {
        return Err(HeaderError::Empty);
    }
    if head.starts_with(MAGIC) || MAGIC.starts_with(head) {
        let Some(header) = head.get(4..8) else {
            return Err(HeaderError::Truncated);
        };
        let version = u16::from_le_bytes([header[0], header[1]]);
        let layer = u16::from_le_bytes([header[2], header[3]]);
        return match (version, layer) {
            (1, 0) => Ok(()),
            (_, 1) => Err(HeaderError::Component),
            (version, _) => Err(HeaderError::Version(version)),
        };
    }
    check_text(head)
}

/// Text: past whitespace and comments comes `(`, and not `(component`.
fn check_text(head: &[u8]) -> Result<(), HeaderError> {
    let mut at = 0;
    while at < head.len() {
        match &head[at..] {
            [b' ' | b'\t' | b'\n' | b'\r', ..] => at += 1,
            [b';', b';', ..] => {
                at = head[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(head.len(), |end| at + end);
            }
            [b'(', b';', ..] => at = block_comment_end(head, at),
            [b'(', rest @ ..] => {
                let word = rest.trim_ascii_start();
                return if word.starts_with(b"component") {
                    Err(HeaderError::Component)
                } else {
                    Ok(())
                };
            }
            _ => return Err(HeaderError::NotWasm),
        }
    }
    // Only whitespace and comments: a whole file like that holds no module, while a head cut
    // off inside a long comment cannot tell; the workers' compiler will.
    if head.len() < HEAD_BYTES {
        Err(HeaderError::NotWasm)
    } else {
        Ok(())
    }
}

/// Where the block comment opening at `start` ends (comments nest), or the end of `head`.
fn block_comment_end(head: &[u8], start: usize) -> usize {
    let (mut depth, mut at) = (0usize, start);
    while at + 1 < head.len() {
        match &head[at..at + 2] {
            b"(;" => (depth, at) = (depth + 1, at + 2),
            b";)" => {
                (depth, at) = (depth - 1, at + 2);
                if depth == 0 {
                    return at;
                }
            }
            _ => at += 1,
        }
    }
    head.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_pass_and_everything_else_is_named() {
        let cases: &[(&[u8], Result<(), HeaderError>)] = &[
            (b"\0asm\x01\0\0\0", Ok(())),
            (b"\0asm\x01\0\0\0 whatever follows", Ok(())),
            (b"(module)", Ok(())),
            (
                b"  ;; a comment\n(; a (; nested ;) one ;)\n\t(func)",
                Ok(()),
            ),
            (b"", Err(HeaderError::Empty)),
            (b"\0as", Err(HeaderError::Truncated)),
            (b"\0asm\x01\0", Err(HeaderError::Truncated)),
            (b"\0asm\x0d\0\x01\0", Err(HeaderError::Component)),
            (b"\0asm\x02\0\0\0", Err(HeaderError::Version(2))),
            (b"( component)", Err(HeaderError::Component)),
            (b"hello\n", Err(HeaderError::NotWasm)),
            (b"\x7fELF\x02\x01", Err(HeaderError::NotWasm)),
            (b" ;; only a comment\n", Err(HeaderError::NotWasm)),
            (b"(; never closed", Err(HeaderError::NotWasm)),
        ];
        for (head, expected) in cases {
            assert_eq!(
                &check(head),
                expected,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn a_head_cut_off_inside_a_comment_is_given_the_benefit_of_the_doubt() {
        let mut head = b";; ".to_vec();
        head.resize(HEAD_BYTES, b'x');
        assert_eq!(check(&head), Ok(()));
    }
}
