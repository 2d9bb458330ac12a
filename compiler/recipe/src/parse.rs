//! Text → AST: pest parses, then one `parse_<rule>` function per grammar rule, in grammar
//! order, builds the span-carrying AST. Syntax errors name what was expected in words
//! ("a layer selector"), never in grammar-rule names.

use pest::Parser;
use pest::iterators::Pair;

use crate::ast::*;
use crate::error::SyntaxError;

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct RecipeParser;

type P<'a> = Pair<'a, Rule>;

fn span(p: &P<'_>) -> Span {
    Span::new(p.as_span().start(), p.as_span().end())
}

/// What each rule means to a user, for "expected …" messages.
fn describe(r: &Rule) -> &'static str {
    match r {
        Rule::EOI => "end of file",
        Rule::use_stmt
        | Rule::def
        | Rule::data_stmt
        | Rule::budget
        | Rule::stage
        | Rule::rule
        | Rule::technique => {
            "a statement (`use`, `stage`, `budget`, `calibrate`, `evaluate`, `recipe`, or a rule like `prune … on …`)"
        }
        Rule::path => "a module path like `std.fold_norms`",
        Rule::args | Rule::params | Rule::params_decl => "a parameter list",
        Rule::arg | Rule::param | Rule::param_decl => "a parameter `name: value`",
        Rule::data_kind => "`calibrate` or `evaluate`",
        Rule::constraint => "a budget constraint like `size <= 400 KiB`",
        Rule::cmp => "a comparison (`<=`, `<`, `>=`, `>`, `==`, `!=`)",
        Rule::variant => "a technique variant",
        Rule::on_kw => "`on` and the layers the rule applies to",
        Rule::keyword => "a keyword",
        Rule::value | Rule::quantity | Rule::number | Rule::word => {
            "a value (a number, a quantity like `50%`, a word or a string)"
        }
        Rule::unit => "a unit",
        Rule::selector | Rule::sel_term | Rule::all | Rule::op_sel | Rule::func => {
            "a layer selector (`\"name\"`, `\"glob*\"`, `/regex/`, an op type like `Conv`, or `*`)"
        }
        Rule::set_op => "`|`, `&` or `-`",
        Rule::optional => "`?`",
        Rule::func_name => "`after`, `before` or `inside`",
        Rule::op_name => "an operator type like `Conv`",
        Rule::pred => "an attribute test like `kernel == 3`",
        Rule::regex | Rule::regex_body => "a regular expression `/…/`",
        Rule::string | Rule::str_body => "a quoted string",
        Rule::ident => "a name",
        Rule::item => "a statement",
        Rule::sel_atom => "a layer selector",
        Rule::ident_char => "a letter, digit or `_`",
        Rule::recipe | Rule::WHITESPACE | Rule::COMMENT => "a recipe",
    }
}

/// How deep parentheses may nest in a recipe: a selector's groups, `after(…)` and
/// `before(…)`. Deeper text is a syntax error found before the grammar runs, so neither the
/// parser nor any later stage (selection, planning, printing) recurses deeper than this.
pub const MAX_NESTING: usize = 64;

/// Parses a recipe.
pub fn parse(src: &str) -> Result<Recipe, SyntaxError> {
    check_nesting(src)?;
    let mut pairs = RecipeParser::parse(Rule::recipe, src).map_err(|e| syntax_error(src, e))?;
    let root = pairs
        .next()
        .ok_or_else(|| SyntaxError::at(0, 0, "empty parse"))?;
    parse_recipe(root)
}

/// Fails at the first `(` nested deeper than [`MAX_NESTING`], outside comments, strings
/// and regular expressions (a quick scan: whatever else is wrong is the grammar's to say).
fn check_nesting(src: &str) -> Result<(), SyntaxError> {
    let bytes = src.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // Skips past a string or regex opened at `i` (or to its line's end), escapes as the
    // grammar reads them: `\\` and any character in a string, only `\/` in a regex.
    let skip_quoted = |mut i: usize, close: u8| {
        i += 1;
        while i < bytes.len() && bytes[i] != close && bytes[i] != b'\n' {
            let escaped = bytes[i] == b'\\' && (close == b'"' || bytes.get(i + 1) == Some(&b'/'));
            i += if escaped { 2 } else { 1 };
        }
        i + 1
    };
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => i = skip_quoted(i, b'"'),
            b'/' => i = skip_quoted(i, b'/'),
            b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(SyntaxError::at(
                        i,
                        1,
                        format!(
                            "parentheses nest deeper than {MAX_NESTING} levels here; a selector may group, or use `after(…)` and `before(…)`, at most {MAX_NESTING} deep"
                        ),
                    ));
                }
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn syntax_error(src: &str, e: pest::error::Error<Rule>) -> SyntaxError {
    let (start, end) = match e.location {
        pest::error::InputLocation::Pos(p) => (p, p),
        pest::error::InputLocation::Span((a, b)) => (a, b),
    };
    let message = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut words: Vec<&str> = positives.iter().map(describe).collect();
            words.sort_unstable();
            words.dedup();
            let found =
                src[start..]
                    .chars()
                    .next()
                    .map_or("the end of the file".to_string(), |c| {
                        let tok: String = src[start..]
                            .chars()
                            .take_while(|c| !c.is_whitespace())
                            .take(20)
                            .collect();
                        if tok.is_empty() {
                            format!("`{c}`")
                        } else {
                            format!("`{tok}`")
                        }
                    });
            match words.as_slice() {
                [] => format!("unexpected {found}"),
                [one] => format!("expected {one}, found {found}"),
                many => format!("expected one of: {}; found {found}", many.join("; ")),
            }
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    let len = src[start..]
        .chars()
        .next()
        .map_or(0, char::len_utf8)
        .max(end - start);
    SyntaxError::at(start, len, message)
}

fn inner<'a>(p: P<'a>) -> impl Iterator<Item = P<'a>> {
    p.into_inner()
}

fn bad(p: &P<'_>, what: &str) -> SyntaxError {
    let s = span(p);
    SyntaxError::at(
        s.start as usize,
        s.len(),
        format!("internal: unexpected {what} ({:?})", p.as_rule()),
    )
}

fn parse_recipe(p: P<'_>) -> Result<Recipe, SyntaxError> {
    let mut items = vec![];
    for it in inner(p) {
        items.push(match it.as_rule() {
            Rule::use_stmt => Item::Use(parse_use(it)?),
            Rule::def => Item::Def(parse_def(it)?),
            Rule::data_stmt => Item::Data(parse_data(it)?),
            Rule::budget => Item::Budget(parse_budget(it)?),
            Rule::stage => Item::Stage(parse_stage(it)?),
            Rule::rule => Item::Rule(parse_rule(it)?),
            Rule::EOI => continue,
            _ => return Err(bad(&it, "item")),
        });
    }
    Ok(Recipe { items })
}

fn parse_ident(p: P<'_>) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span(&p),
    }
}

fn parse_use(p: P<'_>) -> Result<Use, SyntaxError> {
    let sp = span(&p);
    let mut it = inner(p);
    let path = it
        .next()
        .map(parse_ident)
        .ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "use without a path"))?;
    let args = match it.next() {
        Some(a) => parse_args(a)?,
        None => vec![],
    };
    Ok(Use {
        path,
        args,
        span: sp,
    })
}

fn parse_args(p: P<'_>) -> Result<Vec<Arg>, SyntaxError> {
    inner(p).map(parse_arg).collect()
}

fn parse_arg(p: P<'_>) -> Result<Arg, SyntaxError> {
    let sp = span(&p);
    let mut it = inner(p);
    let (Some(name), Some(value)) = (it.next(), it.next()) else {
        return Err(SyntaxError::at(
            sp.start as usize,
            sp.len(),
            "a parameter needs `name: value`",
        ));
    };
    Ok(Arg {
        name: parse_ident(name),
        value: parse_value(value)?,
    })
}

fn parse_def(p: P<'_>) -> Result<Def, SyntaxError> {
    let sp = span(&p);
    let mut name = None;
    let mut params = vec![];
    let mut body = vec![];
    for it in inner(p) {
        match it.as_rule() {
            Rule::ident => name = Some(parse_ident(it)),
            Rule::params_decl => {
                for d in inner(it) {
                    params.push(parse_param_decl(d)?);
                }
            }
            _ => body.push(parse_body_item(it)?),
        }
    }
    let name =
        name.ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "recipe without a name"))?;
    Ok(Def {
        name,
        params,
        body,
        span: sp,
    })
}

fn parse_param_decl(p: P<'_>) -> Result<ParamDecl, SyntaxError> {
    let mut it = inner(p).peekable();
    let name = it.next().map(parse_ident).unwrap_or(Ident {
        name: String::new(),
        span: Span::default(),
    });
    let mut ty = None;
    let mut default = None;
    for x in it {
        match x.as_rule() {
            Rule::ident => ty = Some(parse_ident(x)),
            Rule::value => default = Some(parse_value(x)?),
            _ => return Err(bad(&x, "parameter declaration")),
        }
    }
    Ok(ParamDecl { name, ty, default })
}

fn parse_body_item(p: P<'_>) -> Result<BodyItem, SyntaxError> {
    Ok(match p.as_rule() {
        Rule::use_stmt => BodyItem::Use(parse_use(p)?),
        Rule::stage => BodyItem::Stage(parse_stage(p)?),
        Rule::rule => BodyItem::Rule(parse_rule(p)?),
        _ => return Err(bad(&p, "body item")),
    })
}

fn parse_data(p: P<'_>) -> Result<Data, SyntaxError> {
    let sp = span(&p);
    let mut it = inner(p);
    let kind = match it.next().map(|k| k.as_str().to_string()).as_deref() {
        Some("calibrate") => DataKind::Calibrate,
        _ => DataKind::Evaluate,
    };
    let path = it
        .next()
        .map(parse_string)
        .ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "data without a file"))?;
    let labels = it.next().map(parse_string);
    Ok(Data {
        kind,
        path,
        labels,
        span: sp,
    })
}

fn parse_budget(p: P<'_>) -> Result<Budget, SyntaxError> {
    let sp = span(&p);
    let constraints = inner(p).map(parse_constraint).collect::<Result<_, _>>()?;
    Ok(Budget {
        constraints,
        span: sp,
    })
}

fn parse_cmp(p: &P<'_>) -> Cmp {
    match p.as_str() {
        "<" => Cmp::Lt,
        "<=" => Cmp::Le,
        ">" => Cmp::Gt,
        ">=" => Cmp::Ge,
        "==" => Cmp::Eq,
        _ => Cmp::Ne,
    }
}

fn parse_constraint(p: P<'_>) -> Result<Constraint, SyntaxError> {
    let sp = span(&p);
    let mut it = inner(p);
    let (Some(m), Some(c), Some(v)) = (it.next(), it.next(), it.next()) else {
        return Err(SyntaxError::at(
            sp.start as usize,
            sp.len(),
            "a constraint needs `metric <= value`",
        ));
    };
    Ok(Constraint {
        metric: parse_ident(m),
        cmp: parse_cmp(&c),
        value: parse_value(v)?,
        span: sp,
    })
}

fn parse_stage(p: P<'_>) -> Result<Stage, SyntaxError> {
    let sp = span(&p);
    let mut it = inner(p);
    let name = it
        .next()
        .map(parse_ident)
        .ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "stage without a name"))?;
    let items = it.map(parse_body_item).collect::<Result<_, _>>()?;
    Ok(Stage {
        name,
        items,
        span: sp,
    })
}

fn parse_rule(p: P<'_>) -> Result<crate::ast::Rule, SyntaxError> {
    let sp = span(&p);
    let mut technique = None;
    let mut variant = None;
    let mut selector = None;
    let mut params = vec![];
    for it in inner(p) {
        match it.as_rule() {
            Rule::technique => technique = Some(parse_ident(it)),
            Rule::variant => variant = Some(parse_ident(it)),
            Rule::selector => selector = Some(parse_selector(it)?),
            Rule::params => params = inner(it).map(parse_arg).collect::<Result<_, _>>()?,
            Rule::on_kw => {}
            _ => return Err(bad(&it, "rule part")),
        }
    }
    let (Some(technique), Some(selector)) = (technique, selector) else {
        return Err(SyntaxError::at(
            sp.start as usize,
            sp.len(),
            "a rule needs `technique on selector`",
        ));
    };
    Ok(crate::ast::Rule {
        technique,
        variant,
        selector,
        params,
        span: sp,
    })
}

fn parse_value(p: P<'_>) -> Result<Value, SyntaxError> {
    let sp = span(&p);
    let v = inner(p)
        .next()
        .ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "empty value"))?;
    let kind = match v.as_rule() {
        Rule::quantity => {
            let mut it = inner(v);
            let num = it
                .next()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            let value: f64 = num.parse().map_err(|_| {
                SyntaxError::at(
                    sp.start as usize,
                    sp.len(),
                    format!("`{num}` is not a number"),
                )
            })?;
            let unit = it.next().map(|u| match u.as_str() {
                "%" => Unit::Percent,
                "B" => Unit::Bytes(1.0),
                "KB" => Unit::Bytes(1e3),
                "MB" => Unit::Bytes(1e6),
                "GB" => Unit::Bytes(1e9),
                "KiB" => Unit::Bytes(1024.0),
                "MiB" => Unit::Bytes(1024.0 * 1024.0),
                "GiB" => Unit::Bytes(1024.0 * 1024.0 * 1024.0),
                "s" => Unit::Seconds(1.0),
                "ms" => Unit::Seconds(1e-3),
                "us" => Unit::Seconds(1e-6),
                "K" => Unit::Count(1e3),
                "M" => Unit::Count(1e6),
                "G" => Unit::Count(1e9),
                _ => Unit::Bits,
            });
            ValueKind::Number { value, unit }
        }
        Rule::string => ValueKind::Str(parse_string(v).value),
        _ => ValueKind::Word(v.as_str().to_string()),
    };
    Ok(Value { kind, span: sp })
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_string(p: P<'_>) -> Str {
    let sp = span(&p);
    let body = inner(p)
        .next()
        .map(|b| b.as_str().to_string())
        .unwrap_or_default();
    Str {
        value: unescape(&body),
        span: sp,
    }
}

fn parse_selector(p: P<'_>) -> Result<Selector, SyntaxError> {
    let sp = span(&p);
    let mut it = inner(p);
    let first = it
        .next()
        .ok_or_else(|| SyntaxError::at(0, 0, "empty selector"))?;
    let first = parse_sel_term(first)?;
    let mut rest = vec![];
    while let (Some(op), Some(term)) = (it.next(), it.next()) {
        let op = match op.as_str() {
            "|" => SetOp::Union,
            "&" => SetOp::Inter,
            _ => SetOp::Diff,
        };
        rest.push((op, parse_sel_term(term)?));
    }
    Ok(if rest.is_empty() {
        first
    } else {
        Selector {
            kind: SelKind::Combine(Box::new(first), rest),
            span: sp,
        }
    })
}

fn parse_sel_term(p: P<'_>) -> Result<Selector, SyntaxError> {
    let sp = span(&p);
    let mut it = inner(p);
    let atom = it
        .next()
        .ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "empty selector"))?;
    let s = parse_sel_atom(atom)?;
    Ok(if it.next().is_some() {
        Selector {
            kind: SelKind::Optional(Box::new(s)),
            span: sp,
        }
    } else {
        s
    })
}

/// Whether a quoted name is a glob pattern.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn parse_sel_atom(p: P<'_>) -> Result<Selector, SyntaxError> {
    let sp = span(&p);
    let kind = match p.as_rule() {
        Rule::selector => return parse_selector(p),
        Rule::all => SelKind::All,
        Rule::string => {
            let s = parse_string(p).value;
            if is_glob(&s) {
                SelKind::Glob(s)
            } else {
                SelKind::Name(s)
            }
        }
        Rule::regex => SelKind::Regex(
            inner(p)
                .next()
                .map(|b| b.as_str().replace("\\/", "/"))
                .unwrap_or_default(),
        ),
        Rule::op_sel => {
            let mut it = inner(p);
            let name = it
                .next()
                .map(parse_ident)
                .ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "operator expected"))?;
            let mut preds = vec![];
            for pr in it {
                let mut x = inner(pr);
                let (Some(a), Some(c), Some(v)) = (x.next(), x.next(), x.next()) else {
                    continue;
                };
                preds.push(Pred {
                    attr: parse_ident(a),
                    cmp: parse_cmp(&c),
                    value: parse_value(v)?,
                });
            }
            SelKind::Op { name, preds }
        }
        Rule::func => {
            let mut it = inner(p);
            let f = it
                .next()
                .map(|f| f.as_str().to_string())
                .unwrap_or_default();
            let arg = it
                .next()
                .ok_or_else(|| SyntaxError::at(sp.start as usize, sp.len(), "missing argument"))?;
            match (f.as_str(), arg.as_rule()) {
                ("inside", Rule::string) => SelKind::Inside(parse_string(arg).value),
                ("inside", _) => {
                    return Err(SyntaxError::at(
                        sp.start as usize,
                        sp.len(),
                        "`inside` takes a quoted name prefix, like inside(\"layer4\")",
                    ));
                }
                (_, Rule::string) => {
                    let s = parse_string(arg);
                    let inner_kind = if is_glob(&s.value) {
                        SelKind::Glob(s.value)
                    } else {
                        SelKind::Name(s.value)
                    };
                    let inner_sel = Box::new(Selector {
                        kind: inner_kind,
                        span: s.span,
                    });
                    if f == "after" {
                        SelKind::After(inner_sel)
                    } else {
                        SelKind::Before(inner_sel)
                    }
                }
                _ => {
                    let inner_sel = Box::new(parse_selector(arg)?);
                    if f == "after" {
                        SelKind::After(inner_sel)
                    } else {
                        SelKind::Before(inner_sel)
                    }
                }
            }
        }
        _ => return Err(bad(&p, "selector")),
    };
    Ok(Selector { kind, span: sp })
}
