//! nginx's tokenizer, as `ngx_conf_read_token` reads a file: words, quoted
//! strings with `\` escapes, `{`, `}`, `;`, and `#` comments that start a
//! token. Every token keeps its byte span in the source, so a rewrite can
//! replace exactly one value and keep every other byte of the file.

use std::ops::Range;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A word or a quoted string (the directive name or an argument).
    Word,
    Open,
    Close,
    Semi,
}

/// One token of an nginx file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// The value as nginx sees it: quotes removed, escapes resolved.
    pub value: String,
    /// Byte range of the token as written (quotes included).
    pub span: Range<usize>,
    /// 1-based line where the token starts.
    pub line: usize,
}

/// A quote that never closes: the only thing that stops the tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: unterminated {quote} string (it starts here and never closes)")]
pub struct LexError {
    pub line: usize,
    pub quote: char,
}

/// Splits `src` into tokens; comments and whitespace are dropped.
pub fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' | b'}' | b';' => {
                let kind = match c {
                    b'{' => Kind::Open,
                    b'}' => Kind::Close,
                    _ => Kind::Semi,
                };
                out.push(Token {
                    kind,
                    value: (c as char).to_string(),
                    span: i..i + 1,
                    line,
                });
                i += 1;
            }
            b'"' | b'\'' => {
                let (tok, end, lines) = quoted(src, i, line)?;
                out.push(tok);
                line += lines;
                i = end;
            }
            _ => {
                let (tok, end) = word(src, i, line);
                out.push(tok);
                i = end;
            }
        }
    }
    Ok(out)
}

/// A quoted string from `start` (the quote): value, end offset, newlines crossed.
fn quoted(src: &str, start: usize, line: usize) -> Result<(Token, usize, usize), LexError> {
    let b = src.as_bytes();
    let q = b[start];
    let mut value = Vec::new();
    let mut i = start + 1;
    let mut lines = 0;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && i + 1 < b.len() && (b[i + 1] == q || b[i + 1] == b'\\') {
            i += 1;
        }
        if b[i] == b'\n' {
            lines += 1;
        }
        value.push(b[i]);
        i += 1;
    }
    if i >= b.len() {
        return Err(LexError {
            line,
            quote: q as char,
        });
    }
    let tok = Token {
        kind: Kind::Word,
        value: String::from_utf8_lossy(&value).into_owned(),
        span: start..i + 1,
        line,
    };
    Ok((tok, i + 1, lines))
}

/// An unquoted word: ends at whitespace, `;`, `{` or `}`; `${name}` and
/// `\x` stay inside it.
fn word(src: &str, start: usize, line: usize) -> (Token, usize) {
    let b = src.as_bytes();
    let mut value = Vec::new();
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() || c == b';' || c == b'}' {
            break;
        }
        if c == b'{' {
            if i > start && b[i - 1] == b'$' {
                while i < b.len() && b[i] != b'}' {
                    value.push(b[i]);
                    i += 1;
                }
                if i < b.len() {
                    value.push(b'}');
                    i += 1;
                }
                continue;
            }
            break;
        }
        if c == b'\\' && i + 1 < b.len() {
            i += 1;
        }
        value.push(b[i]);
        i += 1;
    }
    let tok = Token {
        kind: Kind::Word,
        value: String::from_utf8_lossy(&value).into_owned(),
        span: start..i,
        line,
    };
    (tok, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(src: &str) -> Vec<String> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .map(|t| t.value)
            .collect()
    }

    /// Comments, one-line blocks and quotes are read as nginx reads them.
    #[test]
    fn reads_comments_blocks_and_quotes() {
        let src = "# server goproxy:8004;\nupstream goproxy { server goproxy:8005 max_fails=3; keepalive 32; }\n";
        assert_eq!(
            values(src),
            [
                "upstream",
                "goproxy",
                "{",
                "server",
                "goproxy:8005",
                "max_fails=3",
                ";",
                "keepalive",
                "32",
                ";",
                "}"
            ]
        );
        let t = tokenize(src).unwrap();
        assert_eq!(t[4].line, 2);
        assert_eq!(&src[t[4].span.clone()], "goproxy:8005");
        assert_eq!(
            values("return 200 \"a;b # not a comment\";"),
            ["return", "200", "a;b # not a comment", ";"]
        );
        assert_eq!(
            values("add_header X 'it\\'s';"),
            ["add_header", "X", "it's", ";"]
        );
        assert_eq!(values("set $a ${b}c;"), ["set", "$a", "${b}c", ";"]);
        assert_eq!(values("a#b;"), ["a#b", ";"]);
    }

    /// An unterminated quote names its line.
    #[test]
    fn unterminated_quote_names_the_line() {
        let e = tokenize("a;\nreturn 200 \"oops;\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
