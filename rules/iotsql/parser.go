package iotsql

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ---- AST ----

type expr interface{ at() pos }

type litExpr struct {
	p pos
	v value
}

// accessExpr reads from base (nil: the current row — the payload, or the element of a nested
// query) through member names and array indexes: a.b[0].c, get(x, 0).v, decode(...).temperature.
type accessExpr struct {
	p     pos
	base  expr
	segs  []segment
	names []string // when base is nil and every segment is a name: the path, for a fast lookup
}

type segment struct {
	name string
	idx  expr // non-nil for [expr]
}

type starExpr struct{ p pos } // "*" as a function argument: the whole payload

type unaryExpr struct {
	p  pos
	op tokKind // tMinus, tNot
	x  expr
}

type binExpr struct {
	p    pos
	op   tokKind // arithmetic, comparison, AND, OR, IN, ||, or tIdent for CONTAINS
	l, r expr
	fast *fastCmp // "path op literal", the usual WHERE condition, compared without building values
}

// fastCmp is a comparison of a member path with a number or string literal.
type fastCmp struct {
	names   []string
	op      tokKind // as if the path were on the left
	num     bool    // the literal is a number (lit), else a string (str)
	lit     dec
	str     string
	literal value
}

type callExpr struct {
	p    pos
	name string // lower case
	fn   *funcInfo
	args []expr
	cast string         // cast(x AS type): the lower-case type name
	re   *regexp.Regexp // a literal regular expression, compiled once
	// parse_time/time_to_epoch with literal arguments: the pattern and zone, resolved once.
	pattern []patItem
	loc     *time.Location
}

type caseExpr struct {
	p     pos
	subj  expr // nil for a searched CASE
	whens []whenClause
	els   expr
}

type whenClause struct{ cond, res expr }

type objLit struct {
	p    pos
	keys []string
	vals []expr
}

type arrLit struct {
	p     pos
	elems []expr
}

type subquery struct {
	p pos
	q *selectStmt
}

// varExpr reads a SET variable: idx into the query's variables, or -1 in a template, where the
// variable is looked up by name in the query the template is rendered for.
type varExpr struct {
	p    pos
	name string
	idx  int
}

type setAssign struct {
	name string
	x    expr
}

func (e *litExpr) at() pos    { return e.p }
func (e *accessExpr) at() pos { return e.p }
func (e *starExpr) at() pos   { return e.p }
func (e *unaryExpr) at() pos  { return e.p }
func (e *binExpr) at() pos    { return e.p }
func (e *callExpr) at() pos   { return e.p }
func (e *caseExpr) at() pos   { return e.p }
func (e *objLit) at() pos     { return e.p }
func (e *arrLit) at() pos     { return e.p }
func (e *subquery) at() pos   { return e.p }
func (e *varExpr) at() pos    { return e.p }

type selectStmt struct {
	sets []setAssign // the SET clause (top level only)
	// stream: the output can be written directly, without building an object first: no dotted
	// alias, no duplicate names, and "*" (if any) only as the first item.
	stream   bool
	value    bool
	items    []selItem
	topic    string // top level: the FROM topic filter
	filter   topicFilter
	fromExpr expr // nested query: the array or object to query
	where    expr
}

type selItem struct {
	star  bool
	x     expr
	alias []string // AS a.b.c; empty when not aliased
	name  string   // output key when not aliased
}

// ---- parser ----

// maxDepth bounds the nesting of expressions and queries, so that no input can exhaust the stack.
const maxDepth = 100

type parser struct {
	lex      *lexer
	cur      token
	ahead    []token
	v2       bool
	depth    int
	unsup    map[string]bool // functions that evaluate to Undefined locally, for Unsupported()
	vars     map[string]int  // SET variables defined so far; nil in templates (resolved at render)
	template bool
	// stopAtBrace makes a template expression end at its closing '}'.
	err *Error
}

func newParser(src string, v Version) *parser {
	p := &parser{lex: newLexer(src), v2: v == Version20160323, unsup: map[string]bool{}}
	p.cur = p.lex.next()
	return p
}

func (p *parser) fail(at pos, format string, args ...any) {
	if p.err == nil {
		p.err = &Error{Line: at.line, Column: at.col, Msg: fmt.Sprintf(format, args...)}
	}
}

func (p *parser) failed() bool {
	if p.err == nil && p.lex.err != nil {
		p.err = p.lex.err
	}
	return p.err != nil
}

func (p *parser) advance() {
	if len(p.ahead) > 0 {
		p.cur = p.ahead[0]
		p.ahead = p.ahead[1:]
		return
	}
	p.cur = p.lex.next()
}

func (p *parser) peek() token {
	if len(p.ahead) == 0 {
		p.ahead = append(p.ahead, p.lex.next())
	}
	return p.ahead[0]
}

func describe(t token) string {
	switch t.k {
	case tEOF:
		return "end of input"
	case tIdent:
		return "identifier " + strconv.Quote(t.text)
	case tNumber:
		return "number " + t.text
	case tString:
		return "string " + strconv.Quote(t.text)
	}
	if t.k >= tSelect {
		return "keyword " + strings.ToUpper(t.text)
	}
	return t.k.String()
}

func (p *parser) expect(k tokKind, what string) bool {
	if p.failed() {
		return false
	}
	if p.cur.k != k {
		p.fail(p.cur.pos, "expected %s, found %s", what, describe(p.cur))
		return false
	}
	p.advance()
	return true
}

func (p *parser) enter(at pos) bool {
	p.depth++
	if p.depth > maxDepth {
		p.fail(at, "expression nested too deeply (more than %d levels)", maxDepth)
		return false
	}
	return true
}

func (p *parser) leave() { p.depth-- }

// parseQuery parses SELECT ... FROM ... [WHERE ...]. nested is true inside parentheses.
func (p *parser) parseQuery(nested bool) *selectStmt {
	q := &selectStmt{}
	if !nested && p.cur.k == tIdent && strings.EqualFold(p.cur.text, "set") {
		// SET @a = expr [, @b = expr]: variables for SELECT, WHERE, later assignments and templates.
		p.advance()
		p.vars = map[string]int{}
		for {
			if p.cur.k != tVar {
				p.fail(p.cur.pos, "expected a variable (@name) in SET, found %s", describe(p.cur))
				return nil
			}
			name, at := p.cur.text, p.cur.pos
			if _, dup := p.vars[name]; dup {
				p.fail(at, "variable @%s is assigned twice (variables are immutable)", name)
				return nil
			}
			p.advance()
			if !p.expect(tEq, "'=' after the variable") {
				return nil
			}
			x := p.parseExpr()
			if p.failed() {
				return nil
			}
			p.vars[name] = len(q.sets) // defined only after its own expression
			q.sets = append(q.sets, setAssign{name: name, x: x})
			if p.cur.k != tComma {
				break
			}
			p.advance()
		}
	}
	if !p.expect(tSelect, "SELECT") {
		return nil
	}
	if p.cur.k == tIdent && strings.EqualFold(p.cur.text, "value") && (startsExpr(p.peek()) || p.peek().k == tStar) {
		q.value = true
		p.advance()
	}
	for {
		starPos := p.cur.pos
		it := p.parseItem(len(q.items) + 1)
		if p.failed() {
			return nil
		}
		if it.star && q.value {
			p.fail(starPos, "SELECT VALUE takes one expression, not '*'")
			return nil
		}
		q.items = append(q.items, it)
		if p.cur.k != tComma {
			break
		}
		if q.value {
			p.fail(p.cur.pos, "SELECT VALUE takes exactly one expression")
			return nil
		}
		p.advance()
	}
	if p.failed() {
		return nil
	}
	if p.cur.k != tFrom {
		p.fail(p.cur.pos, "expected FROM, found %s", describe(p.cur))
		return nil
	}
	fromPos := p.cur.pos
	if nested {
		p.advance()
		q.fromExpr = p.parseExpr()
		if p.failed() {
			return nil
		}
	} else {
		// The topic filter: a quoted string, or (as in some of the reference's examples) bare text.
		if len(p.ahead) != 0 {
			p.fail(fromPos, "internal parser state error")
			return nil
		}
		p.lex.skipSpace()
		if p.lex.i < len(p.lex.src) && (p.lex.src[p.lex.i] == '\'' || p.lex.src[p.lex.i] == '"') {
			p.advance()
		} else {
			p.cur = p.lex.rawTopic()
		}
		if p.failed() {
			return nil
		}
		if p.cur.k != tString || p.cur.text == "" {
			p.fail(p.cur.pos, "expected a topic filter after FROM")
			return nil
		}
		if msg := validateTopicFilter(p.cur.text); msg != "" {
			p.fail(p.cur.pos, "invalid topic filter %q: %s", p.cur.text, msg)
			return nil
		}
		q.topic = p.cur.text
		q.filter = compileTopicFilter(q.topic)
		p.advance()
	}
	if p.cur.k == tWhere {
		p.advance()
		q.where = p.parseExpr()
		if p.failed() {
			return nil
		}
	}
	q.stream = streamable(q)
	return q
}

func streamable(q *selectStmt) bool {
	if q.value {
		return false
	}
	seen := map[string]bool{}
	for i, it := range q.items {
		if it.star {
			if i != 0 {
				return false
			}
			continue
		}
		name := it.name
		if len(it.alias) > 1 {
			return false
		}
		if len(it.alias) == 1 {
			name = it.alias[0]
		}
		if seen[name] {
			return false
		}
		seen[name] = true
	}
	return true
}

// outName is the output key of a non-star item of a streamable query.
func (it *selItem) outName() string {
	if len(it.alias) == 1 {
		return it.alias[0]
	}
	return it.name
}

// startsExpr reports whether t can begin an expression (used to tell SELECT VALUE x from a field
// named "value").
func startsExpr(t token) bool {
	switch t.k {
	case tIdent, tNumber, tString, tLParen, tLBrack, tLBrace, tMinus, tPlus, tNot, tCase, tTrue,
		tFalse, tNull, tVar:
		return true
	}
	return false
}

func (p *parser) parseItem(n int) selItem {
	if p.cur.k == tStar {
		p.advance()
		return selItem{star: true}
	}
	x := p.parseExpr()
	if p.failed() {
		return selItem{}
	}
	it := selItem{x: x}
	if p.cur.k == tAs {
		p.advance()
		for {
			// A name, or a keyword other than FROM and WHERE (AS value, AS end, ...).
			if p.cur.k != tIdent && (p.cur.k < tSelect || p.cur.k == tFrom || p.cur.k == tWhere) {
				p.fail(p.cur.pos, "expected a name after AS, found %s", describe(p.cur))
				return selItem{}
			}
			it.alias = append(it.alias, p.cur.text)
			p.advance()
			if p.cur.k != tDot {
				break
			}
			p.advance()
		}
		return it
	}
	it.name = defaultName(x, n)
	return it
}

// defaultName is the output key of an unaliased item: the last member name of a path, the name of
// a function, or "_N" for any other expression (N: the item's 1-based position). The reference
// shows only the first case; see docs/iotsql.md.
func defaultName(x expr, n int) string {
	switch e := x.(type) {
	case *accessExpr:
		for i := len(e.segs) - 1; i >= 0; i-- {
			if e.segs[i].idx == nil {
				return e.segs[i].name
			}
		}
		if e.base != nil {
			return defaultName(e.base, n)
		}
	case *callExpr:
		return e.name
	case *varExpr:
		return e.name
	}
	return "_" + strconv.Itoa(n)
}

func (p *parser) parseExpr() expr {
	if !p.enter(p.cur.pos) {
		return nil
	}
	defer p.leave()
	return p.parseOr()
}

func (p *parser) parseOr() expr {
	l := p.parseAnd()
	for !p.failed() && p.cur.k == tOr {
		at := p.cur.pos
		p.advance()
		r := p.parseAnd()
		l = &binExpr{p: at, op: tOr, l: l, r: r}
	}
	return l
}

func (p *parser) parseAnd() expr {
	l := p.parseNot()
	for !p.failed() && p.cur.k == tAnd {
		at := p.cur.pos
		p.advance()
		r := p.parseNot()
		l = &binExpr{p: at, op: tAnd, l: l, r: r}
	}
	return l
}

func (p *parser) parseNot() expr {
	if p.cur.k == tNot {
		at := p.cur.pos
		p.advance()
		if !p.enter(at) {
			return nil
		}
		x := p.parseNot()
		p.leave()
		return &unaryExpr{p: at, op: tNot, x: x}
	}
	return p.parseCmp()
}

func (p *parser) parseCmp() expr {
	l := p.parseAdd()
	if p.failed() {
		return l
	}
	switch p.cur.k {
	case tEq, tNe, tLt, tLe, tGt, tGe, tIn:
		op, at := p.cur.k, p.cur.pos
		p.advance()
		r := p.parseAdd()
		b := &binExpr{p: at, op: op, l: l, r: r}
		if op != tIn {
			b.fast = fastCompare(op, l, r)
		}
		return b
	case tIdent:
		if strings.EqualFold(p.cur.text, "contains") {
			at := p.cur.pos
			p.advance()
			r := p.parseAdd()
			return &binExpr{p: at, op: tIdent, l: l, r: r}
		}
	case tNot:
		if p.peek().k == tIn {
			at := p.cur.pos
			p.advance()
			p.advance()
			r := p.parseAdd()
			return &unaryExpr{p: at, op: tNot, x: &binExpr{p: at, op: tIn, l: l, r: r}}
		}
	}
	return l
}

func (p *parser) parseAdd() expr {
	l := p.parseMul()
	for !p.failed() && (p.cur.k == tPlus || p.cur.k == tMinus || p.cur.k == tConcat) {
		op, at := p.cur.k, p.cur.pos
		p.advance()
		r := p.parseMul()
		l = &binExpr{p: at, op: op, l: l, r: r}
	}
	return l
}

func (p *parser) parseMul() expr {
	l := p.parseUnary()
	for !p.failed() && (p.cur.k == tStar || p.cur.k == tSlash || p.cur.k == tPercent) {
		op, at := p.cur.k, p.cur.pos
		p.advance()
		r := p.parseUnary()
		l = &binExpr{p: at, op: op, l: l, r: r}
	}
	return l
}

func (p *parser) parseUnary() expr {
	if p.cur.k == tMinus || p.cur.k == tPlus {
		op, at := p.cur.k, p.cur.pos
		p.advance()
		if !p.enter(at) {
			return nil
		}
		defer p.leave()
		x := p.parseUnary()
		if op == tPlus || p.failed() {
			return x
		}
		// Fold "-literal" so that -9223372036854775808 and -5 are plain literals.
		if lit, ok := x.(*litExpr); ok && (lit.v.k == kInt || lit.v.k == kDec) {
			if lit.v.k == kInt && lit.v.i != math.MinInt64 {
				return &litExpr{p: at, v: intV(-lit.v.i)}
			}
			if lit.v.k == kDec {
				return &litExpr{p: at, v: decOf(lit.v.dec().neg(), false)}
			}
		}
		return &unaryExpr{p: at, op: tMinus, x: x}
	}
	return p.parsePostfix()
}

func (p *parser) parsePostfix() expr {
	at := p.cur.pos
	var base expr
	var segs []segment
	if p.cur.k == tIdent && p.peek().k != tLParen {
		segs = append(segs, segment{name: p.cur.text})
		p.advance()
	} else {
		base = p.parsePrimary()
	}
	for !p.failed() {
		switch p.cur.k {
		case tNumber:
			if strings.HasPrefix(p.cur.text, ".") && len(segs) > 0 {
				p.fail(p.cur.pos, "a member name cannot start with a digit; use get(x, %q) (see the reference's JSON extensions)", p.cur.text[1:])
				return nil
			}
		case tDot:
			p.advance()
			if p.cur.k == tIdent || p.cur.k >= tSelect {
				segs = append(segs, segment{name: p.cur.text})
				p.advance()
				continue
			}
			if p.cur.k == tNumber {
				p.fail(p.cur.pos, "a member name cannot start with a digit; use get(x, %q) (see the reference's JSON extensions)", p.cur.text)
				return nil
			}
			p.fail(p.cur.pos, "expected a member name after '.', found %s", describe(p.cur))
			return nil
		case tLBrack:
			lb := p.cur.pos
			p.advance()
			idx := p.parseExpr()
			if !p.expect(tRBrack, "']'") {
				return nil
			}
			if idx == nil {
				p.fail(lb, "expected an index")
				return nil
			}
			segs = append(segs, segment{idx: idx})
			continue
		}
		break
	}
	if p.failed() {
		return nil
	}
	if len(segs) == 0 {
		return base
	}
	a := &accessExpr{p: at, base: base, segs: segs}
	if base == nil {
		a.names = make([]string, 0, len(segs))
		for _, s := range segs {
			if s.idx != nil {
				a.names = nil
				break
			}
			a.names = append(a.names, s.name)
		}
	}
	return a
}

func (p *parser) parsePrimary() expr {
	t := p.cur
	switch t.k {
	case tNumber:
		p.advance()
		return &litExpr{p: t.pos, v: p.numberLit(t)}
	case tString:
		p.advance()
		return &litExpr{p: t.pos, v: strV(t.text)}
	case tTrue:
		p.advance()
		return &litExpr{p: t.pos, v: trueV}
	case tFalse:
		p.advance()
		return &litExpr{p: t.pos, v: falseV}
	case tNull:
		p.advance()
		return &litExpr{p: t.pos, v: nullV}
	case tIdent:
		return p.parseCall()
	case tVar:
		p.advance()
		if p.vars == nil {
			if !p.template {
				p.fail(t.pos, "unknown variable @%s: the query has no SET clause", t.text)
				return nil
			}
			return &varExpr{p: t.pos, name: t.text, idx: -1}
		}
		idx, ok := p.vars[t.text]
		if !ok {
			p.fail(t.pos, "unknown variable @%s", t.text)
			return nil
		}
		return &varExpr{p: t.pos, name: t.text, idx: idx}
	case tLParen:
		p.advance()
		if !p.enter(t.pos) {
			return nil
		}
		defer p.leave()
		if p.cur.k == tSelect {
			if !p.v2 {
				p.fail(t.pos, "nested queries need SQL version 2016-03-23")
				return nil
			}
			q := p.parseQuery(true)
			if !p.expect(tRParen, "')' after the nested query") {
				return nil
			}
			return &subquery{p: t.pos, q: q}
		}
		x := p.parseExpr()
		if !p.expect(tRParen, "')'") {
			return nil
		}
		return x
	case tLBrace:
		return p.parseObject()
	case tLBrack:
		return p.parseArray()
	case tCase:
		return p.parseCase()
	case tStar:
		p.fail(t.pos, "'*' is only allowed as a SELECT item or as a function argument")
		return nil
	}
	if !p.failed() {
		p.fail(t.pos, "expected an expression, found %s", describe(t))
	}
	return nil
}

func (p *parser) numberLit(t token) value {
	if v, err := strconv.ParseInt(t.text, 10, 64); err == nil {
		return intV(v)
	}
	d, ok := parseDec(t.text)
	if !ok {
		p.fail(t.pos, "number %s is out of range", t.text)
		return undef
	}
	return decOf(d, p.v2)
}

func (p *parser) parseCall() expr {
	t := p.cur
	name := strings.ToLower(t.text)
	p.advance() // name
	p.advance() // (
	fi := funcTable[name]
	if fi == nil {
		p.fail(t.pos, "unknown function %s()", t.text)
		return nil
	}
	if fi.v2only && !p.v2 {
		p.fail(t.pos, "function %s() needs SQL version 2016-03-23", name)
		return nil
	}
	c := &callExpr{p: t.pos, name: name, fn: fi}
	if !p.enter(t.pos) {
		return nil
	}
	defer p.leave()
	if name == "cast" {
		c.args = append(c.args, p.parseExpr())
		if p.failed() {
			return nil
		}
		if !p.expect(tAs, "AS in cast(value AS type)") {
			return nil
		}
		if p.cur.k != tIdent {
			p.fail(p.cur.pos, "expected a type name in cast(), found %s", describe(p.cur))
			return nil
		}
		ty := strings.ToLower(p.cur.text)
		switch ty {
		case "string", "nvarchar", "text", "ntext", "varchar", "int", "integer", "double":
		case "decimal", "bool", "boolean":
			if !p.v2 {
				p.fail(p.cur.pos, "cast to %s needs SQL version 2016-03-23", p.cur.text)
				return nil
			}
		default:
			p.fail(p.cur.pos, "unknown type %q in cast()", p.cur.text)
			return nil
		}
		c.cast = ty
		p.advance()
		if !p.expect(tRParen, "')'") {
			return nil
		}
		return c
	}
	if p.cur.k != tRParen {
		for {
			if p.cur.k == tStar {
				c.args = append(c.args, &starExpr{p: p.cur.pos})
				p.advance()
			} else {
				c.args = append(c.args, p.parseExpr())
			}
			if p.failed() {
				return nil
			}
			if p.cur.k != tComma {
				break
			}
			p.advance()
		}
	}
	if !p.expect(tRParen, "')' or ','") {
		return nil
	}
	if len(c.args) < fi.min || (fi.max >= 0 && len(c.args) > fi.max) {
		p.fail(t.pos, "%s() takes %s, got %d", name, fi.arity(), len(c.args))
		return nil
	}
	if fi.literalArg >= 0 && len(c.args) > fi.literalArg {
		// decode/encode: "A literal string representing the scheme".
		if lit, ok := c.args[fi.literalArg].(*litExpr); !ok || lit.v.k != kStr {
			p.fail(c.args[fi.literalArg].at(), "%s(): the scheme must be a literal string", name)
			return nil
		}
		scheme := strings.ToLower(c.args[fi.literalArg].(*litExpr).v.s)
		switch {
		case scheme == "base64" && (name == "encode" || len(c.args) == 2):
		case scheme == "proto" && name == "decode":
			// Protobuf decoding needs the descriptor set in S3: parsed, Undefined locally.
			p.unsup["decode(proto)"] = true
		default:
			p.fail(c.args[fi.literalArg].at(), "%s(): unsupported scheme %q (want 'base64')", name, scheme)
			return nil
		}
	}
	if fi.external {
		p.unsup[name] = true
	}
	if fi.id == fParseTime || fi.id == fTimeToEpoch {
		pi := 0
		if fi.id == fTimeToEpoch {
			pi = 1
		}
		if lit, ok := c.args[pi].(*litExpr); ok && lit.v.k == kStr {
			c.pattern, _ = compilePattern(lit.v.s) // nil (Undefined at run time) when invalid
		}
		if fi.id == fParseTime && len(c.args) == 3 {
			if lit, ok := c.args[2].(*litExpr); ok && lit.v.k == kStr {
				c.loc, _ = lookupZone(lit.v.s)
			}
		}
	}
	if (fi.id == fRegexpMatches || fi.id == fRegexpReplace || fi.id == fRegexpSubstr) && len(c.args) > 1 {
		if lit, ok := c.args[1].(*litExpr); ok && lit.v.k == kStr {
			// An invalid pattern is not a compile error: the reference makes the result Undefined.
			c.re, _ = regexp.Compile(lit.v.s)
		}
	}
	return c
}

func (p *parser) parseObject() expr {
	t := p.cur
	if !p.v2 {
		p.fail(t.pos, "object literals need SQL version 2016-03-23")
		return nil
	}
	if !p.enter(t.pos) {
		return nil
	}
	defer p.leave()
	p.advance()
	o := &objLit{p: t.pos}
	if p.cur.k == tRBrace {
		p.advance()
		return o
	}
	for {
		if p.cur.k != tString && p.cur.k != tIdent {
			p.fail(p.cur.pos, "expected an object key (a string), found %s", describe(p.cur))
			return nil
		}
		o.keys = append(o.keys, p.cur.text)
		p.advance()
		if !p.expect(tColon, "':'") {
			return nil
		}
		o.vals = append(o.vals, p.parseExpr())
		if p.failed() {
			return nil
		}
		if p.cur.k == tComma {
			p.advance()
			continue
		}
		if !p.expect(tRBrace, "',' or '}'") {
			return nil
		}
		return o
	}
}

func (p *parser) parseArray() expr {
	t := p.cur
	if !p.v2 {
		p.fail(t.pos, "array literals need SQL version 2016-03-23")
		return nil
	}
	if !p.enter(t.pos) {
		return nil
	}
	defer p.leave()
	p.advance()
	a := &arrLit{p: t.pos}
	if p.cur.k == tRBrack {
		p.advance()
		return &litExpr{p: a.p, v: arrV([]value{})}
	}
	for {
		a.elems = append(a.elems, p.parseExpr())
		if p.failed() {
			return nil
		}
		if p.cur.k == tComma {
			p.advance()
			continue
		}
		if !p.expect(tRBrack, "',' or ']'") {
			return nil
		}
		return foldArray(a)
	}
}

func (p *parser) parseCase() expr {
	t := p.cur
	if !p.enter(t.pos) {
		return nil
	}
	defer p.leave()
	p.advance()
	c := &caseExpr{p: t.pos}
	if p.cur.k != tWhen {
		c.subj = p.parseExpr()
		if p.failed() {
			return nil
		}
	}
	for p.cur.k == tWhen {
		p.advance()
		cond := p.parseExpr()
		if !p.expect(tThen, "THEN") {
			return nil
		}
		res := p.parseExpr()
		if p.failed() {
			return nil
		}
		c.whens = append(c.whens, whenClause{cond: cond, res: res})
	}
	if len(c.whens) == 0 {
		p.fail(p.cur.pos, "CASE needs at least one WHEN clause, found %s", describe(p.cur))
		return nil
	}
	if p.cur.k == tElse {
		p.advance()
		c.els = p.parseExpr()
		if p.failed() {
			return nil
		}
	}
	if !p.expect(tEnd, "END or WHEN or ELSE") {
		return nil
	}
	return c
}

// foldArray turns an array literal of constants into one constant, so that evaluating it (say, in
// "x IN ['a', 'b']") allocates nothing. Constants are never modified by evaluation.
func foldArray(a *arrLit) expr {
	vals := make([]value, 0, len(a.elems))
	for _, e := range a.elems {
		lit, ok := e.(*litExpr)
		if !ok {
			return a
		}
		vals = append(vals, lit.v)
	}
	return &litExpr{p: a.p, v: arrV(vals)}
}

// fastCompare recognises "a.b.c op literal" and "literal op a.b.c".
func fastCompare(op tokKind, l, r expr) *fastCmp {
	path, okp := l.(*accessExpr)
	lit, okl := r.(*litExpr)
	if !okp || !okl {
		path, okp = r.(*accessExpr)
		lit, okl = l.(*litExpr)
		if !okp || !okl {
			return nil
		}
		switch op { // mirror: 5 > x is x < 5
		case tLt:
			op = tGt
		case tLe:
			op = tGe
		case tGt:
			op = tLt
		case tGe:
			op = tLe
		}
	}
	if path.names == nil {
		return nil
	}
	f := &fastCmp{names: path.names, op: op, literal: lit.v}
	switch lit.v.k {
	case kInt, kDec:
		d, ok := lit.v.toDec()
		if !ok {
			return nil
		}
		f.num, f.lit = true, d
	case kStr:
		if op != tEq && op != tNe {
			return nil // ordering with strings converts them: the general path
		}
		f.str = lit.v.s
	default:
		return nil
	}
	return f
}
