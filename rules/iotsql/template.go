package iotsql

import (
	"fmt"
	"strings"
)

// tmplPart is literal text or one ${expression}.
type tmplPart struct {
	text string
	x    expr
}

// compileTemplate splits s into literal text and ${expression} parts. The reference defines no escape
// for a literal "${"; a "$" not followed by "{" is plain text.
func compileTemplate(s string, v Version) ([]tmplPart, error) {
	var parts []tmplPart
	line, col := 1, 1
	i := 0
	var lit strings.Builder
	for i < len(s) {
		if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
			if lit.Len() > 0 {
				parts = append(parts, tmplPart{text: lit.String()})
				lit.Reset()
			}
			openLine, openCol := line, col
			p := &parser{lex: &lexer{src: s, i: i + 2, line: line, col: col + 2}, v2: v == Version20160323, unsup: map[string]bool{}, template: true}
			p.cur = p.lex.next()
			if p.cur.k == tRBrace {
				return nil, &Error{Line: openLine, Column: openCol, Msg: "empty ${} in template"}
			}
			x := p.parseExpr()
			if !p.failed() && p.cur.k != tRBrace {
				if p.cur.k == tEOF {
					p.fail(pos{openLine, openCol}, "unterminated ${ in template: missing '}'")
				} else {
					p.fail(p.cur.pos, "expected '}' to close ${, found %s", describe(p.cur))
				}
			}
			if p.failed() {
				return nil, p.err
			}
			parts = append(parts, tmplPart{x: x})
			// Continue after the closing brace.
			line, col = p.cur.pos.line, p.cur.pos.col+1
			i = p.cur.end
			continue
		}
		if s[i] == '\n' {
			line, col = line+1, 1
		} else if s[i] < 0x80 || s[i] >= 0xC0 {
			col++
		}
		lit.WriteByte(s[i])
		i++
	}
	if lit.Len() > 0 {
		parts = append(parts, tmplPart{text: lit.String()})
	}
	return parts, nil
}

// render evaluates each expression against the incoming message. Strings are inserted as they are,
// Undefined as "" (the reference: Undefined "is converted to an empty string when serialized by
// itself"), other values as their JSON text.
func (t *Template) render(m *Message, q *Query) (string, error) {
	var b strings.Builder
	ev := evaluator{m: m, v2: t.version == Version20160323, version: t.version}
	ev.st = m.state()
	if q != nil && len(q.stmt.sets) > 0 {
		qev := evaluator{m: m, v2: q.version == Version20160323, version: q.version, st: ev.st}
		base := qev.setVars(q.stmt.sets)
		defer qev.releaseVars(base)
		if qev.err != nil {
			return "", fmt.Errorf("iotsql: SET of %q: %w", q.stmt.topic, qev.err)
		}
		ev.vars, ev.sets = qev.vars, qev.sets
	}
	for _, p := range t.parts {
		if p.x == nil {
			b.WriteString(p.text)
			continue
		}
		v := ev.eval(p.x)
		if ev.err != nil {
			return "", fmt.Errorf("iotsql: template %q: %w", t.src, ev.err)
		}
		switch v.k {
		case kUndef:
		case kStr:
			b.WriteString(v.s)
		default:
			b.Write(appendJSON(nil, v, ev.v2))
		}
	}
	return b.String(), nil
}
