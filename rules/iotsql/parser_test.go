package iotsql

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name      string
		sql       string
		v         Version
		line, col int
		msg       string
	}{
		{"empty", "", DefaultVersion, 1, 1, "expected SELECT, found end of input"},
		{"no select", "FROM 'a'", DefaultVersion, 1, 1, "expected SELECT, found keyword FROM"},
		{"no from", "SELECT a", DefaultVersion, 1, 9, "expected FROM, found end of input"},
		{"no topic", "SELECT a FROM", DefaultVersion, 1, 14, "expected a topic filter after FROM"},
		{"bad hash", "SELECT a FROM 'a/#/b'", DefaultVersion, 1, 15, "invalid topic filter \"a/#/b\": '#' must be the whole last level"},
		{"bad plus", "SELECT a FROM 'a/b+'", DefaultVersion, 1, 15, "'+' must be a whole level"},
		{"missing operand", "SELECT a + FROM 't'", DefaultVersion, 1, 12, "expected an expression, found keyword FROM"},
		{"unclosed paren", "SELECT (a FROM 't'", DefaultVersion, 1, 11, "expected ')', found keyword FROM"},
		{"unterminated string", "SELECT a FROM 't' WHERE b = 'abc", DefaultVersion, 1, 29, "unterminated string literal"},
		{"bad char", "SELECT a ? b FROM 't'", DefaultVersion, 1, 10, "unexpected character '?'"},
		{"second line", "SELECT a,\n  b +\n  FROM 't'", DefaultVersion, 3, 3, "expected an expression, found keyword FROM"},
		{"column counts characters", "SELECT 'é', ? FROM 't'", DefaultVersion, 1, 13, "unexpected character '?'"},
		{"trailing", "SELECT a FROM 't' WHERE a = 1 b", DefaultVersion, 1, 31, "unexpected identifier \"b\" after the query"},
		{"unknown function", "SELECT foo(1) FROM 't'", DefaultVersion, 1, 8, "unknown function foo()"},
		{"arity", "SELECT topic(1, 2) FROM 't'", DefaultVersion, 1, 8, "topic() takes 0 to 1 arguments, got 2"},
		{"v2 function in v1", "SELECT indexof('a', 'b') FROM 't'", Version20151008, 1, 8, "function indexof() needs SQL version 2016-03-23"},
		{"object literal v1", "SELECT {'a': 1} AS o FROM 't'", Version20151008, 1, 8, "object literals need SQL version 2016-03-23"},
		{"star in expression", "SELECT 1 + * FROM 't'", DefaultVersion, 1, 12, "'*' is only allowed"},
		{"value star", "SELECT VALUE * FROM 't'", DefaultVersion, 1, 14, "SELECT VALUE takes one expression"},
		{"value two items", "SELECT VALUE a, b FROM 't'", DefaultVersion, 1, 15, "SELECT VALUE takes exactly one expression"},
		{"alias missing", "SELECT a AS FROM 't'", DefaultVersion, 1, 13, "expected a name after AS"},
		{"digit member", "SELECT a.0 FROM 't'", DefaultVersion, 1, 9, "use get(x, \"0\")"},
		{"cast type", "SELECT cast(a AS Float) FROM 't'", DefaultVersion, 1, 18, "unknown type \"Float\" in cast()"},
		{"cast no as", "SELECT cast(a) FROM 't'", DefaultVersion, 1, 14, "expected AS in cast(value AS type)"},
		{"encode scheme not literal", "SELECT encode(a, b) FROM 't'", Version20160323, 1, 18, "the scheme must be a literal string"},
		{"case without end", "SELECT CASE a WHEN 1 THEN 2 FROM 't'", DefaultVersion, 1, 29, "expected END or WHEN or ELSE"},
		{"number then letter", "SELECT 12abc FROM 't'", DefaultVersion, 1, 10, "unexpected 'a' after a number"},
		{"nested where missing", "SELECT (SELECT a FROM b WHERE) AS x FROM 't'", Version20160323, 1, 30, "expected an expression, found ')'"},
		{"too deep", "SELECT " + strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200) + " FROM 't'", DefaultVersion, 1, 0, "nested too deeply"},
		{"bad version", "SELECT a FROM 't'", Version("2020-01-01"), 1, 1, "unknown SQL version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := Compile(tt.sql, tt.v)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tt.sql, q)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if e.Line != tt.line || (tt.col != 0 && e.Column != tt.col) {
				t.Errorf("position = %d:%d, want %d:%d (%s)", e.Line, e.Column, tt.line, tt.col, e.Msg)
			}
			if !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tt.msg)
			}
			want := strings.TrimSpace(strings.Split(e.Error(), ":")[1])
			if !strings.Contains(e.Error(), itoa(e.Line)+":"+itoa(e.Column)+":") || want == "" {
				t.Errorf("Error() = %q lacks line:col", e.Error())
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestCompileOK(t *testing.T) {
	for _, sql := range []string{
		"select * from 'a/b'",
		"SELECT value FROM 'a'",                   // a field named "value"
		"SELECT value.x AS y FROM 'a'",            // likewise
		"SELECT VALUE value FROM 'a'",             // SELECT VALUE of the field "value"
		"SELECT contains FROM 'a' WHERE contains", // CONTAINS is contextual
		"SELECT a FROM '$aws/events/presence/connected/+'",
		"SELECT a FROM \"a/b\"",
		"SELECT a FROM a/+/c WHERE b = 1",
		"SELECT -9223372036854775808 AS m FROM 'a'",
		"SELECT a['k'] FROM 'a'",
		"SELECT a FROM 'a' WHERE NOT NOT a",
		"SELECT 'it''s' AS s FROM 'a'",
	} {
		if _, err := Compile(sql, Version20160323); err != nil {
			t.Errorf("Compile(%q): %v", sql, err)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{"": DefaultVersion, "2015-10-08": Version20151008, "2016-03-23": Version20160323} {
		got, err := ParseVersion(in)
		if err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"beta", "2016-03-24", "x"} {
		if _, err := ParseVersion(in); err == nil {
			t.Errorf("ParseVersion(%q) succeeded", in)
		}
	}
	if DefaultVersion != Version20151008 {
		t.Fatal("AWS's default SQL version is 2015-10-08")
	}
}

func TestUnsupported(t *testing.T) {
	q, err := Compile(`SELECT aws_lambda('arn', *) AS l, get_secret('a','SecretString','k','r') AS s,
		machinelearning_predict('m','r',*) AS p, decode(*, 'proto', 'n', 'f', 'm') AS d, topic() AS t
		FROM 'a' WHERE get_thing_shadow('t', 'r').state.reported.x = 1`, Version20160323)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"aws_lambda", "decode(proto)", "get_secret", "get_thing_shadow", "machinelearning_predict"}
	if got := q.Unsupported(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Unsupported() = %v, want %v", got, want)
	}
	q2, _ := Compile("SELECT * FROM 'a'", DefaultVersion)
	if got := q2.Unsupported(); len(got) != 0 {
		t.Fatalf("Unsupported() = %v, want none", got)
	}
}

func TestTopicMatching(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"+/+", "/x", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$aws/events", false},
		{"+/events", "$aws/events", false},
		{"$aws/events/#", "$aws/events/presence/connected/x", true},
		{"dt/+/telemetry", "dt/d1/telemetry", true},
		{"dt/+/telemetry", "dt/d1/telemetry/x", false},
		{"dt/+/telemetry", "dt//telemetry", true},
		{"a/b/c", "a/b", false},
		{"a", "a/b", false},
	}
	for _, tt := range tests {
		q, err := Compile("SELECT * FROM '"+tt.filter+"'", DefaultVersion)
		if err != nil {
			t.Fatal(err)
		}
		if got := q.MatchesTopic(tt.topic); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
		if q.TopicFilter() != tt.filter {
			t.Errorf("TopicFilter() = %q", q.TopicFilter())
		}
	}
}

// topicMatchesRef is a straightforward level-by-level matcher, the reference for topicFilter.match.
func topicMatchesRef(filter, topic string) bool {
	if filter == "" || topic == "" {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		// next level of each
		fl, frest, fmore := cutLevel(filter)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := cutLevel(topic)
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore && !tmore {
			return true
		}
		if !tmore {
			// "a/#" also matches "a".
			return fmore && frest == "#"
		}
		if !fmore {
			return false
		}
		filter, topic = frest, trest
	}
}

func TestTopicFilterMatchesReference(t *testing.T) {
	filters := []string{"a", "a/b", "a/+", "+", "#", "a/#", "+/b", "+/+", "a/+/c", "$aws/#", "$aws/+/x", "/a", "a/", "+/#", "a/b/#"}
	topics := []string{"a", "a/b", "a/c", "b", "a/b/c", "a/", "/a", "/", "//", "$aws/x", "$aws/y/x", "a/b/c/d", "x/b", "a//c", "a/x/c", "$a"}
	for _, f := range filters {
		tf := compileTopicFilter(f)
		for _, topic := range topics {
			if got, want := tf.match(topic), topicMatchesRef(f, topic); got != want {
				t.Errorf("filter %q topic %q: match = %v, reference %v", f, topic, got, want)
			}
		}
	}
}
