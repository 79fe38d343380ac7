// Package iotsql implements the SQL of AWS IoT topic rules: lexer, parser, evaluator and functions,
// for both SQL versions, plus substitution templates for action fields.
//
// API CONTRACT (kept stable for the rules package; the bodies below are placeholders being replaced):
package iotsql

import (
	"encoding/json"
	"errors"
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

var errTODO = errors.New("iotsql: not implemented yet")

// ParseVersion accepts "" (meaning DefaultVersion) and the two known versions.
func ParseVersion(s string) (Version, error) { return DefaultVersion, errTODO }

// Error is a compile error with its position (1-based line and column).
type Error struct {
	Line, Column int
	Msg          string
}

func (e *Error) Error() string { return e.Msg }

// Query is a compiled SELECT statement; safe for concurrent use.
type Query struct{}

// Compile parses and checks sql. Errors are *Error.
func Compile(sql string, v Version) (*Query, error) { return nil, errTODO }

// TopicFilter is the FROM clause's topic filter.
func (q *Query) TopicFilter() string { return "" }

// MatchesTopic reports whether topic matches the FROM filter (MQTT + and # wildcards).
func (q *Query) MatchesTopic(topic string) bool { return false }

// Unsupported lists the functions the query calls that need AWS and evaluate to Undefined locally.
func (q *Query) Unsupported() []string { return nil }

// Message is one MQTT message and its evaluation context. Its payload is decoded at most once, however
// many queries evaluate it; a Message is not safe for concurrent use.
type Message struct {
	Topic     string
	Payload   []byte
	ClientID  string
	Principal string
	AccountID string
	// Timestamp is what timestamp() returns; zero means the time of evaluation.
	Timestamp time.Time
	// NewUUID backs newuuid(); nil means random version-4 UUIDs.
	NewUUID func() string
}

// Result is the outcome of evaluating a Query on a Message.
type Result struct {
	// Matched is true when the topic matched and WHERE was true.
	Matched bool
	// Output is the SELECT result when Matched, encoded as JSON; nil otherwise.
	Output json.RawMessage
}

// Eval evaluates the query on m. An error means the payload could not be evaluated at all
// (for example, it is not JSON where the query needs JSON); errors are wrapped with context.
func (q *Query) Eval(m *Message) (Result, error) { return Result{}, errTODO }

// Template is a compiled substitution template: literal text with ${expression} parts.
type Template struct{}

// CompileTemplate compiles s. Errors are *Error, with positions within s.
func CompileTemplate(s string, v Version) (*Template, error) { return nil, errTODO }

// Render evaluates the template's expressions on m (the incoming message, as in AWS) and returns the text.
func (t *Template) Render(m *Message) (string, error) { return "", errTODO }
