package iotsql

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzCompile: no input panics or hangs the parser; every failure is a positioned *Error; every
// query that compiles can be evaluated and produces valid JSON (or raw bytes for binary payloads).
func FuzzCompile(f *testing.F) {
	for _, s := range ruleSet {
		f.Add(s)
	}
	for _, s := range []string{
		"SELECT VALUE (SELECT v FROM e WHERE n = 'temperature') FROM '#'",
		"SELECT CASE a WHEN 1 THEN {'x': [1, 2.5, 'y']} ELSE -b END AS c FROM 'a/+/#'",
		"SELECT cast(a AS Int), get(b, 0).c[1], decode(d, 'base64').e FROM x/y",
		"SELECT * FROM 'a' WHERE NOT (a IN [1,2] OR b CONTAINS 'c') AND d || e <> 'f'",
		"SELECT parse_time('yyyy', timestamp(), 'UTC') AS t, ${x} FROM 'a'",
		"select", "((((", "SELECT 'unterminated", "SELECT a.0 FROM 't'", "SELECT 1e999 FROM 't'",
		"SET @a = a * 2, @b = {'k': @a} SELECT @b.k, (SELECT VALUE c FROM b WHERE @a > 1) FROM '#'",
		"SET @x = ", "SELECT @", "SET @a = 1 SELECT @a.b[0] FROM 'a'",
	} {
		f.Add(s)
	}
	payload := []byte(`{"a":1,"b":[{"c":[1,2]}],"d":"eyJlIjoxfQ==","e":[{"n":"temperature","v":1}],"s":"x"}`)
	f.Fuzz(func(t *testing.T, sql string) {
		for _, v := range []Version{Version20151008, Version20160323} {
			q, err := Compile(sql, v)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Line < 1 || e.Column < 1 || e.Msg == "" {
					t.Fatalf("Compile(%q): bad error %#v", sql, err)
				}
				continue
			}
			m := &Message{Topic: "a/b", Payload: payload, Timestamp: time.UnixMilli(1)}
			// Evaluate with any topic: exercise SELECT and WHERE even if FROM would not match.
			q.stmt.filter = compileTopicFilter("#")
			r, err := q.Eval(m)
			if err != nil {
				t.Fatalf("Eval(%q): %v", sql, err)
			}
			if r.Matched && len(r.Output) > 0 && !json.Valid(r.Output) {
				t.Fatalf("Eval(%q): invalid JSON output %q", sql, r.Output)
			}
		}
	})
}

// FuzzEval evaluates a fixed set of queries on arbitrary payloads: no panics, outputs are valid
// JSON, and non-JSON payloads give ErrPayloadNotJSON or (for SELECT *) the raw bytes.
func FuzzEval(f *testing.F) {
	for _, s := range []string{telemetry, `[]`, `{"a":"\u0000\ud800"}`, `{"e":[{"n":1},{"n":"x"},3]}`, "\x00\xff", `1e400`, `{"a":{"a":{"a":[[[[1]]]]}}}`,
		`[1.50, 10.0, 0.0000001, 0.000001, -0.0, -0, 123456789012345678, 12345678901234567890, 1e5, 0.1, 1.0000000000000002, "\u00e9", "\ud800", "é"]`,
		`[0.0, 0.000000, 0.0000000, -0.00, 1234567890.12345678, 1234567890.123456789, 0.0000012, 100.000, 1E-999, 1E-1000, 9.99E999, 1e1000]`} {
		f.Add([]byte(s))
	}
	sqls := []string{
		"SELECT * FROM '#'",
		"SELECT *, topic() AS t FROM '#' WHERE metrics.temperature > 20 OR a = 'x'",
		"SELECT VALUE (SELECT VALUE n FROM e WHERE isUndefined(n) = false) FROM '#'",
		"SELECT a.a.a[0][0], get(e, 1), concat(e, a), upper(a), a + e, length(*) AS l FROM '#'",
		"SELECT VALUE transform('enrichArray', {'k': 1}, e) FROM '#'",
		"SELECT encode(*, 'base64') AS b, decode(a, 'base64') AS d FROM '#'",
	}
	var qs []*Query
	for _, s := range sqls {
		qs = append(qs, mustCompile(f, s, Version20160323))
	}
	tm, err := CompileTemplate("x/${a}/${topic(1)}/${e}", Version20160323)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m := &Message{Topic: "a/b", Payload: payload}
		valid := json.Valid(payload) && utf8.Valid(payload) // JSON is UTF-8; encoding/json does not check
		for i, q := range qs {
			r, err := q.Eval(m)
			if err != nil {
				if !errors.Is(err, ErrPayloadNotJSON) || valid {
					t.Fatalf("%s on %q: %v", sqls[i], payload, err)
				}
				continue
			}
			if r.Binary {
				if valid || string(r.Output) != string(payload) {
					t.Fatalf("%s on %q: binary output %q", sqls[i], payload, r.Output)
				}
				continue
			}
			if len(r.Output) > 0 && !json.Valid(r.Output) {
				t.Fatalf("%s on %q: invalid JSON %q", sqls[i], payload, r.Output)
			}
		}
		if _, err := tm.Render(m); err != nil && (!errors.Is(err, ErrPayloadNotJSON) || valid) {
			t.Fatalf("template on %q: %v", payload, err)
		}
		if valid {
			// Copying the payload's text must give exactly what converting each value gives.
			var d doc
			if err := d.parse(string(payload)); err != nil {
				t.Fatalf("parse %q: %v", payload, err)
			}
			for _, v2 := range []bool{false, true} {
				fast := string(appendJSON(nil, d.value(0), v2))
				slow := string(appendJSONMode(nil, d.value(0), v2, false))
				if fast != slow && d.nodes[0].k >= kArr {
					t.Fatalf("payload %q (v2=%v): raw copy %q, conversion %q", payload, v2, fast, slow)
				}
			}
		}
		if valid && !strings.Contains(string(payload), "\\u") && m.st.decodes != 1 {
			t.Fatalf("decoded %d times", m.st.decodes)
		}
	})
}

// FuzzTemplate: templates never panic; failures are positioned *Errors.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"${topic()}/x", "a${", "${a}${b}", "$${x}", "${{'a':'}'}}", "${1 +}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := CompileTemplate(s, Version20160323)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 || e.Column < 1 {
				t.Fatalf("CompileTemplate(%q): bad error %#v", s, err)
			}
			return
		}
		_, _ = tm.Render(&Message{Topic: "a/b", Payload: []byte(`{"a":1}`)})
	})
}
