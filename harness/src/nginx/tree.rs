//! Tokens to directives: `name args... ;` or `name args... { ... }`, each
//! with its line and byte spans.

use std::ops::Range;

use super::lexer::{Kind, Token};

/// One directive of one file.
#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub args: Vec<Token>,
    pub line: usize,
    /// Index of the file (in [`super::NginxConfig::files`]) it is written in.
    pub file: usize,
    /// From the name to the `;` or the block's `}` inclusive.
    pub span: Range<usize>,
    /// The directives inside `{ ... }`, if it is a block.
    pub block: Option<Vec<Directive>>,
    /// For `include`: the indexes of the files it pulled in from the tree.
    pub included: Vec<usize>,
}

/// A structural error of one file, at a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole file's tokens.
pub fn parse(tokens: &[Token], file: usize) -> Result<Vec<Directive>, ParseError> {
    let mut pos = 0;
    let out = block(tokens, &mut pos, file, false)?;
    Ok(out)
}

fn block(
    t: &[Token],
    pos: &mut usize,
    file: usize,
    nested: bool,
) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    while *pos < t.len() {
        let tok = &t[*pos];
        match tok.kind {
            Kind::Close if nested => {
                return Ok(out);
            }
            Kind::Close => {
                return Err(ParseError {
                    line: tok.line,
                    message: "unexpected \"}\" (no block is open here)".into(),
                })
            }
            Kind::Open | Kind::Semi => {
                return Err(ParseError {
                    line: tok.line,
                    message: format!("unexpected \"{}\" (a directive name is missing)", tok.value),
                })
            }
            Kind::Word => out.push(directive(t, pos, file)?),
        }
    }
    if nested {
        let line = t.last().map_or(1, |l| l.line);
        return Err(ParseError {
            line,
            message: "unexpected end of file, expecting \"}\"".into(),
        });
    }
    Ok(out)
}

fn directive(t: &[Token], pos: &mut usize, file: usize) -> Result<Directive, ParseError> {
    let name = &t[*pos];
    *pos += 1;
    let mut args = Vec::new();
    while *pos < t.len() {
        let tok = &t[*pos];
        match tok.kind {
            Kind::Word => {
                args.push(tok.clone());
                *pos += 1;
            }
            Kind::Semi => {
                *pos += 1;
                return Ok(Directive {
                    name: name.value.clone(),
                    args,
                    line: name.line,
                    file,
                    span: name.span.start..tok.span.end,
                    block: None,
                    included: Vec::new(),
                });
            }
            Kind::Open => {
                *pos += 1;
                let inner = block(t, pos, file, true)?;
                let close = &t[*pos];
                *pos += 1;
                return Ok(Directive {
                    name: name.value.clone(),
                    args,
                    line: name.line,
                    file,
                    span: name.span.start..close.span.end,
                    block: Some(inner),
                    included: Vec::new(),
                });
            }
            Kind::Close => break,
        }
    }
    Err(ParseError {
        line: name.line,
        message: format!("directive \"{}\" is not terminated by \";\"", name.value),
    })
}
