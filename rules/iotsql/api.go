// Package iotsql implements the SQL of AWS IoT topic rules: lexer, parser, evaluator and functions,
// for both SQL versions, plus substitution templates for action fields.
//
// A Query is compiled once and is safe for concurrent use; a Message carries one MQTT message and
// caches its decoded payload, so that any number of queries can read it for the cost of one decode.
// See docs/iotsql.md for the supported language, the semantics notes and the function table.
package iotsql

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Version is an AWS IoT SQL version.
type Version string

const (
	Version20151008 Version = "2015-10-08"
	Version20160323 Version = "2016-03-23"
	// DefaultVersion is what AWS uses for a rule that names no awsIotSqlVersion.
	DefaultVersion = Version20151008
)

// ParseVersion accepts "" (meaning DefaultVersion) and the two known versions.
func ParseVersion(s string) (Version, error) {
	switch Version(s) {
	case "":
		return DefaultVersion, nil
	case Version20151008, Version20160323:
		return Version(s), nil
	case "beta":
		return "", fmt.Errorf("iotsql: SQL version %q is not supported (use %s or %s)", s, Version20151008, Version20160323)
	}
	return "", fmt.Errorf("iotsql: unknown SQL version %q (want %s or %s)", s, Version20151008, Version20160323)
}

// Error is a compile error with its position (1-based line and column; columns count characters).
type Error struct {
	Line, Column int
	Msg          string
}

func (e *Error) Error() string { return fmt.Sprintf("iotsql: %d:%d: %s", e.Line, e.Column, e.Msg) }

// ErrPayloadNotJSON is returned (wrapped) by Eval and Render when the message payload is not JSON
// and the query reads JSON fields from it. Queries that only use "*" or functions accept any
// payload, as in AWS ("Working with binary payloads").
var ErrPayloadNotJSON = errors.New("iotsql: payload is not JSON")

// Query is a compiled SELECT statement; safe for concurrent use.
type Query struct {
	sql         string
	version     Version
	stmt        *selectStmt
	unsupported []string
}

// Compile parses and checks sql. Errors are *Error.
func Compile(sql string, v Version) (*Query, error) {
	if v == "" {
		v = DefaultVersion
	}
	if v != Version20151008 && v != Version20160323 {
		return nil, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("unknown SQL version %q", v)}
	}
	p := newParser(sql, v)
	stmt := p.parseQuery(false)
	if !p.failed() && p.cur.k != tEOF {
		p.fail(p.cur.pos, "unexpected %s after the query", describe(p.cur))
	}
	if p.failed() {
		return nil, p.err
	}
	return &Query{sql: sql, version: v, stmt: stmt, unsupported: sortedKeys(p.unsup)}, nil
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// String returns the SQL text the query was compiled from.
func (q *Query) String() string { return q.sql }

// Version is the SQL version the query was compiled for.
func (q *Query) Version() Version { return q.version }

// TopicFilter is the FROM clause's topic filter.
func (q *Query) TopicFilter() string { return q.stmt.topic }

// MatchesTopic reports whether topic matches the FROM filter (MQTT + and # wildcards).
func (q *Query) MatchesTopic(topic string) bool { return q.stmt.filter.match(topic) }

// Unsupported lists the functions the query calls that need AWS (or data a local broker does not
// have) and evaluate to Undefined locally, sorted by name.
func (q *Query) Unsupported() []string { return append([]string(nil), q.unsupported...) }

// Message is one MQTT message and its evaluation context. Its payload is decoded at most once, however
// many queries evaluate it; a Message is not safe for concurrent use. The decoded form reads Payload
// in place: do not modify Payload's bytes while the Message is in use (assigning a new slice is fine
// and is noticed). Use one Message per MQTT message, and do not copy one that has been evaluated.
type Message struct {
	Topic     string
	Payload   []byte
	ClientID  string
	Principal string
	AccountID string
	// Timestamp is what timestamp() returns; zero means the time of the first evaluation.
	Timestamp time.Time
	// NewUUID backs newuuid(); nil means random version-4 UUIDs.
	NewUUID func() string

	st msgState
}

// Result is the outcome of evaluating a Query on a Message.
type Result struct {
	// Matched is true when the topic matched and WHERE was true.
	Matched bool
	// Output is the SELECT result when Matched, encoded as JSON; nil otherwise. It is empty (not nil)
	// when SELECT VALUE yields Undefined, which AWS serializes as an empty payload. When Binary is
	// true it holds the raw, non-JSON payload.
	Output json.RawMessage
	// Binary is true when the payload is not JSON and the query is "SELECT *": AWS then passes the
	// payload through as raw bytes.
	Binary bool
}

// Eval evaluates the query on m. An error means the payload could not be evaluated at all
// (for example, it is not JSON where the query needs JSON); errors are wrapped with context.
func (q *Query) Eval(m *Message) (Result, error) {
	if !q.stmt.filter.match(m.Topic) {
		return Result{}, nil
	}
	ev := evaluator{m: m, v2: q.version == Version20160323, version: q.version}
	ev.st = m.state()
	if len(q.stmt.sets) > 0 {
		defer ev.releaseVars(ev.setVars(q.stmt.sets))
		if ev.err != nil {
			return Result{}, fmt.Errorf("iotsql: SET of %q: %w", q.stmt.topic, ev.err)
		}
	}
	if q.stmt.where != nil {
		w := ev.eval(q.stmt.where)
		if ev.err != nil {
			return Result{}, fmt.Errorf("iotsql: WHERE of %q: %w", q.stmt.topic, ev.err)
		}
		if b, ok := w.toBool(); !ok || !b {
			return Result{}, nil
		}
	}
	out, binary := ev.output(q.stmt)
	if ev.err != nil {
		return Result{}, fmt.Errorf("iotsql: SELECT of %q: %w", q.stmt.topic, ev.err)
	}
	return Result{Matched: true, Output: out, Binary: binary}, nil
}

// Template is a compiled substitution template: literal text with ${expression} parts.
type Template struct {
	src     string
	version Version
	parts   []tmplPart
}

// CompileTemplate compiles s. Errors are *Error, with positions within s.
func CompileTemplate(s string, v Version) (*Template, error) {
	if v == "" {
		v = DefaultVersion
	}
	if v != Version20151008 && v != Version20160323 {
		return nil, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("unknown SQL version %q", v)}
	}
	parts, err := compileTemplate(s, v)
	if err != nil {
		return nil, err
	}
	return &Template{src: s, version: v, parts: parts}, nil
}

// String returns the template text.
func (t *Template) String() string { return t.src }

// Render evaluates the template's expressions on m (the incoming message, as in AWS) and returns the text.
// Variables (@name) are Undefined here; use Query.Render for a rule with a SET clause.
func (t *Template) Render(m *Message) (string, error) { return t.render(m, nil) }

// Render renders an action template of this rule: like Template.Render, with the rule's SET
// variables available as @name (the reference: variables can be used in action templates).
func (q *Query) Render(t *Template, m *Message) (string, error) { return t.render(m, q) }
