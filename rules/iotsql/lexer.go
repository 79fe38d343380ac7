package iotsql

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tStar
	tComma
	tDot
	tLParen
	tRParen
	tLBrack
	tRBrack
	tLBrace
	tRBrace
	tColon
	tPlus
	tMinus
	tSlash
	tPercent
	tEq
	tNe
	tLt
	tLe
	tGt
	tGe
	tConcat // ||
	tVar    // @name (SET clause variables); text holds the name without '@'
	// keywords
	tSelect
	tFrom
	tWhere
	tAs
	tAnd
	tOr
	tNot
	tIn
	tCase
	tWhen
	tThen
	tElse
	tEnd
	tTrue
	tFalse
	tNull
)

var tokNames = [...]string{
	tEOF: "end of input", tIdent: "identifier", tNumber: "number", tString: "string",
	tStar: "'*'", tComma: "','", tDot: "'.'", tLParen: "'('", tRParen: "')'", tLBrack: "'['",
	tRBrack: "']'", tLBrace: "'{'", tRBrace: "'}'", tColon: "':'", tPlus: "'+'", tMinus: "'-'",
	tSlash: "'/'", tPercent: "'%'", tEq: "'='", tNe: "'<>'", tLt: "'<'", tLe: "'<='", tGt: "'>'",
	tGe: "'>='", tConcat: "'||'", tVar: "variable", tSelect: "SELECT", tFrom: "FROM", tWhere: "WHERE", tAs: "AS",
	tAnd: "AND", tOr: "OR", tNot: "NOT", tIn: "IN", tCase: "CASE", tWhen: "WHEN", tThen: "THEN",
	tElse: "ELSE", tEnd: "END", tTrue: "TRUE", tFalse: "FALSE", tNull: "NULL",
}

func (k tokKind) String() string { return tokNames[k] }

// Reserved words. VALUE and CONTAINS are recognised by the parser from context, so that payload
// fields with those names still work.
var keywords = map[string]tokKind{
	"select": tSelect, "from": tFrom, "where": tWhere, "as": tAs, "and": tAnd, "or": tOr,
	"not": tNot, "in": tIn, "case": tCase, "when": tWhen, "then": tThen, "else": tElse,
	"end": tEnd, "true": tTrue, "false": tFalse, "null": tNull,
}

type pos struct{ line, col int }

type token struct {
	k    tokKind
	text string // identifier or keyword as written; string literal contents; number text
	pos  pos
	off  int // byte offset of the token's start
	end  int // byte offset just after the token
}

type lexer struct {
	src  string
	i    int
	line int
	col  int
	err  *Error
}

func newLexer(src string) *lexer { return &lexer{src: src, line: 1, col: 1} }

func (l *lexer) errorf(p pos, msg string) {
	if l.err == nil {
		l.err = &Error{Line: p.line, Column: p.col, Msg: msg}
	}
}

// advance moves over the next n bytes, keeping line and column (in characters) up to date.
func (l *lexer) advance(n int) {
	end := l.i + n
	for l.i < end {
		r, size := utf8.DecodeRuneInString(l.src[l.i:])
		l.i += size
		if r == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
	}
}

func (l *lexer) skipSpace() {
	for l.i < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[l.i:])
		if !unicode.IsSpace(r) {
			return
		}
		l.advance(size)
	}
}

func isIdentStart(r rune) bool { return r == '_' || r == '$' || unicode.IsLetter(r) }
func isIdentPart(r rune) bool {
	return r == '_' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// next scans one token. Errors are recorded in l.err and reported as tEOF.
func (l *lexer) next() token {
	l.skipSpace()
	p := pos{l.line, l.col}
	start := l.i
	mk := func(k tokKind, n int) token {
		l.advance(n)
		return token{k: k, pos: p, off: start, end: l.i, text: l.src[start:l.i]}
	}
	if l.i >= len(l.src) {
		return token{k: tEOF, pos: p, off: start, end: start}
	}
	c := l.src[l.i]
	two := ""
	if l.i+1 < len(l.src) {
		two = l.src[l.i : l.i+2]
	}
	switch two {
	case "<>", "!=":
		return mk(tNe, 2)
	case "<=":
		return mk(tLe, 2)
	case ">=":
		return mk(tGe, 2)
	case "||":
		return mk(tConcat, 2)
	}
	switch c {
	case '*':
		return mk(tStar, 1)
	case ',':
		return mk(tComma, 1)
	case '.':
		if l.i+1 < len(l.src) && isDigit(l.src[l.i+1]) {
			break
		}
		return mk(tDot, 1)
	case '(':
		return mk(tLParen, 1)
	case ')':
		return mk(tRParen, 1)
	case '[':
		return mk(tLBrack, 1)
	case ']':
		return mk(tRBrack, 1)
	case '{':
		return mk(tLBrace, 1)
	case '}':
		return mk(tRBrace, 1)
	case ':':
		return mk(tColon, 1)
	case '+':
		return mk(tPlus, 1)
	case '-':
		return mk(tMinus, 1)
	case '/':
		return mk(tSlash, 1)
	case '%':
		return mk(tPercent, 1)
	case '=':
		return mk(tEq, 1)
	case '<':
		return mk(tLt, 1)
	case '>':
		return mk(tGt, 1)
	case '\'', '"':
		return l.str(p)
	case '@':
		n := 1
		for l.i+n < len(l.src) {
			r2, s2 := utf8.DecodeRuneInString(l.src[l.i+n:])
			if r2 >= utf8.RuneSelf || !isIdentPart(r2) || r2 == '$' {
				break
			}
			n += s2
		}
		if n == 1 {
			l.errorf(p, "expected a variable name after '@'")
			return token{k: tEOF, pos: p, off: start, end: start}
		}
		if n-1 > 64 {
			l.errorf(p, "variable names are at most 64 characters")
			return token{k: tEOF, pos: p, off: start, end: start}
		}
		t := mk(tVar, n)
		t.text = t.text[1:]
		return t
	}
	if isDigit(c) || c == '.' {
		return l.number(p)
	}
	r, size := utf8.DecodeRuneInString(l.src[l.i:])
	if isIdentStart(r) {
		n := size
		for l.i+n < len(l.src) {
			r2, s2 := utf8.DecodeRuneInString(l.src[l.i+n:])
			if !isIdentPart(r2) {
				break
			}
			n += s2
		}
		t := mk(tIdent, n)
		if k, ok := keywords[strings.ToLower(t.text)]; ok {
			t.k = k
		}
		return t
	}
	if r == utf8.RuneError && size == 1 {
		l.errorf(p, "invalid UTF-8 in SQL text")
	} else {
		l.errorf(p, "unexpected character "+quoteRune(r))
	}
	return token{k: tEOF, pos: p, off: start, end: start}
}

func quoteRune(r rune) string { return "'" + string(r) + "'" }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (l *lexer) number(p pos) token {
	start := l.i
	j := l.i
	for j < len(l.src) && isDigit(l.src[j]) {
		j++
	}
	if j < len(l.src) && l.src[j] == '.' && j+1 < len(l.src) && isDigit(l.src[j+1]) {
		j++
		for j < len(l.src) && isDigit(l.src[j]) {
			j++
		}
	}
	if j < len(l.src) && (l.src[j] == 'e' || l.src[j] == 'E') {
		k := j + 1
		if k < len(l.src) && (l.src[k] == '+' || l.src[k] == '-') {
			k++
		}
		if k < len(l.src) && isDigit(l.src[k]) {
			for k < len(l.src) && isDigit(l.src[k]) {
				k++
			}
			j = k
		}
	}
	if j < len(l.src) {
		if r, _ := utf8.DecodeRuneInString(l.src[j:]); isIdentStart(r) {
			l.advance(j - start)
			l.errorf(pos{l.line, l.col}, "unexpected "+quoteRune(r)+" after a number")
			return token{k: tEOF, pos: p, off: start, end: j}
		}
	}
	l.advance(j - start)
	return token{k: tNumber, pos: p, off: start, end: l.i, text: l.src[start:l.i]}
}

// str scans a string literal in single or double quotes. Inside, a doubled quote or a backslash
// before the quote character or a backslash stands for that character; any other backslash is kept
// as written, so regular expressions such as '\d+' read naturally. (The reference does not define
// escapes in SQL string literals; see docs/iotsql.md.)
func (l *lexer) str(p pos) token {
	q := l.src[l.i]
	start := l.i
	j := l.i + 1
	var b strings.Builder
	for {
		if j >= len(l.src) {
			l.errorf(p, "unterminated string literal")
			l.advance(len(l.src) - l.i)
			return token{k: tEOF, pos: p, off: start, end: j}
		}
		c := l.src[j]
		if c == q {
			if j+1 < len(l.src) && l.src[j+1] == q {
				b.WriteByte(q)
				j += 2
				continue
			}
			j++
			break
		}
		if c == '\\' && j+1 < len(l.src) && (l.src[j+1] == q || l.src[j+1] == '\\') {
			b.WriteByte(l.src[j+1])
			j += 2
			continue
		}
		b.WriteByte(c)
		j++
	}
	l.advance(j - l.i)
	return token{k: tString, pos: p, off: start, end: l.i, text: b.String()}
}

// rawTopic scans an unquoted topic filter after FROM (the reference's own examples write
// "FROM topic/#"): everything up to the next white space.
func (l *lexer) rawTopic() token {
	l.skipSpace()
	p := pos{l.line, l.col}
	start := l.i
	j := l.i
	for j < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[j:])
		if unicode.IsSpace(r) || r == ')' {
			break
		}
		j += size
	}
	l.advance(j - start)
	return token{k: tString, pos: p, off: start, end: l.i, text: l.src[start:l.i]}
}
