package iotsql

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

const telemetry = `{"deviceId":"dev-0042","ts":1700000000123,"seq":1842,"metrics":{"temperature":21.7,"humidity":48.2,"battery":3.71,"rssi":-67},"status":"ok","fw":"1.4.2","location":{"lat":47.6062,"lon":-122.3321}}`

func mustCompile(t testing.TB, sql string, v Version) *Query {
	t.Helper()
	q, err := Compile(sql, v)
	if err != nil {
		t.Fatalf("Compile(%q): %v", sql, err)
	}
	return q
}

func TestPayloadDecodedOnce(t *testing.T) {
	m := &Message{Topic: "dt/dev-0042/telemetry", Payload: []byte(telemetry)}
	for i := 0; i < 5; i++ {
		q := mustCompile(t, fmt.Sprintf("SELECT deviceId, metrics.temperature + %d AS t FROM 'dt/+/telemetry' WHERE seq > 0", i), Version20160323)
		r, err := q.Eval(m)
		if err != nil || !r.Matched {
			t.Fatalf("Eval: %v %v", r, err)
		}
	}
	if m.st.decodes != 1 {
		t.Fatalf("payload decoded %d times, want 1", m.st.decodes)
	}
	// A new payload is noticed.
	m.Payload = []byte(`{"deviceId":"other","seq":1,"metrics":{"temperature":1}}`)
	r, err := mustCompile(t, "SELECT VALUE deviceId FROM '#'", Version20160323).Eval(m)
	if err != nil || string(r.Output) != `"other"` {
		t.Fatalf("after payload change: %s %v", r.Output, err)
	}
	if m.st.decodes != 2 {
		t.Fatalf("decodes = %d, want 2", m.st.decodes)
	}
}

func TestNotJSON(t *testing.T) {
	m := &Message{Topic: "a", Payload: []byte("\x00binary")}
	_, err := mustCompile(t, "SELECT a FROM 'a'", DefaultVersion).Eval(m)
	if !errors.Is(err, ErrPayloadNotJSON) {
		t.Fatalf("err = %v, want ErrPayloadNotJSON", err)
	}
	r, err := mustCompile(t, "SELECT * FROM 'a'", DefaultVersion).Eval(m)
	if err != nil || !r.Binary || string(r.Output) != "\x00binary" {
		t.Fatalf("SELECT * of binary: %+v %v", r, err)
	}
	// Invalid UTF-8 is not JSON (RFC 8259), even when the bytes are otherwise well-formed: it is binary.
	inv := &Message{Topic: "a", Payload: []byte("{\"thingName\":\"dev-\xff\xfe\"}")}
	if _, err := mustCompile(t, "SELECT thingName FROM 'a'", DefaultVersion).Eval(inv); !errors.Is(err, ErrPayloadNotJSON) {
		t.Fatalf("invalid UTF-8: err = %v, want ErrPayloadNotJSON", err)
	}
	if r, err := mustCompile(t, "SELECT * FROM 'a'", DefaultVersion).Eval(inv); err != nil || !r.Binary || string(r.Output) != string(inv.Payload) {
		t.Fatalf("SELECT * of invalid UTF-8: %+v %v, want it unchanged as binary", r, err)
	}
	// A non-matching topic never needs the payload.
	if r, err := mustCompile(t, "SELECT a FROM 'b'", DefaultVersion).Eval(m); err != nil || r.Matched {
		t.Fatalf("non-matching topic: %+v %v", r, err)
	}
	tm, err := CompileTemplate("x/${a}", DefaultVersion)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tm.Render(m); !errors.Is(err, ErrPayloadNotJSON) {
		t.Fatalf("Render err = %v", err)
	}
}

func TestJSONPayloadForms(t *testing.T) {
	tests := []struct{ payload, sql, want string }{
		{`[1,2,3]`, "SELECT * FROM 'a'", `[1,2,3]`},
		{`"just a string"`, "SELECT VALUE upper(*) FROM 'a'", `"JUST A STRING"`},
		{`{"s":"a\"b\\c\u00e9\ud83d\ude00\n"}`, "SELECT s, length(s) AS n FROM 'a'", `{"s":"a\"b\\cé😀\n","n":8}`},
		{`{"k":"v","k":"w"}`, "SELECT VALUE k FROM 'a'", `"v"`},
		{` {"a" : [ ] , "b":{ }} `, "SELECT * FROM 'a'", `{"a":[],"b":{}}`},
		{`{"big":123456789012345678901234567890}`, "SELECT big > 1 AS b FROM 'a'", `{"b":true}`},
		{`{"n":-0.0,"e":1E2}`, "SELECT * FROM 'a'", `{"n":0,"e":100}`},
	}
	for _, tt := range tests {
		r, err := mustCompile(t, tt.sql, Version20160323).Eval(&Message{Topic: "a", Payload: []byte(tt.payload)})
		if err != nil || string(r.Output) != tt.want {
			t.Errorf("%s on %s = %s, %v; want %s", tt.sql, tt.payload, r.Output, err, tt.want)
		}
		if err == nil && !json.Valid(r.Output) {
			t.Errorf("invalid JSON output %s", r.Output)
		}
	}
	for _, bad := range []string{`{"a":}`, `{"a":1,}`, `[1 2]`, `{"a":01}`, `"\x"`, `{"a":1} x`, `nul`, "\"a\tb\"", `{"a":1`} {
		_, err := mustCompile(t, "SELECT a FROM 'a'", DefaultVersion).Eval(&Message{Topic: "a", Payload: []byte(bad)})
		if !errors.Is(err, ErrPayloadNotJSON) {
			t.Errorf("payload %q: err = %v, want ErrPayloadNotJSON", bad, err)
		}
	}
}

func TestConcurrentEval(t *testing.T) {
	q := mustCompile(t, "SELECT deviceId, metrics.temperature * 2 AS t2, (SELECT VALUE k FROM [{'k':1},{'k':2}]) AS ks FROM 'dt/+/telemetry' WHERE metrics.battery > 3", Version20160323)
	want := `{"deviceId":"dev-0042","t2":43.4,"ks":[1,2]}`
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				m := &Message{Topic: "dt/x/telemetry", Payload: []byte(telemetry)}
				r, err := q.Eval(m)
				if err != nil || string(r.Output) != want {
					t.Errorf("got %s %v", r.Output, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestTimestampStablePerMessage(t *testing.T) {
	m := &Message{Topic: "a", Payload: []byte(`{}`)}
	q := mustCompile(t, "SELECT VALUE timestamp() FROM 'a'", DefaultVersion)
	r1, _ := q.Eval(m)
	time.Sleep(2 * time.Millisecond)
	r2, _ := q.Eval(m)
	if string(r1.Output) != string(r2.Output) {
		t.Fatalf("timestamp() changed within one message: %s vs %s", r1.Output, r2.Output)
	}
}

func TestNewUUIDDefault(t *testing.T) {
	q := mustCompile(t, "SELECT VALUE newuuid() FROM 'a'", DefaultVersion)
	r, _ := q.Eval(&Message{Topic: "a", Payload: []byte(`{}`)})
	var s string
	if err := json.Unmarshal(r.Output, &s); err != nil || len(s) != 36 || s[14] != '4' {
		t.Fatalf("newuuid() = %s", r.Output)
	}
}

// A rule that does not match costs no allocation: neither a topic mismatch nor a false WHERE
// (once the message's payload has been decoded, which happens at most once per message).
func TestNonMatchingRulesDoNotAllocate(t *testing.T) {
	m := &Message{Topic: "dt/dev-0042/telemetry", Payload: []byte(telemetry)}
	topicMiss := mustCompile(t, "SELECT * FROM 'app/+/bind' WHERE action = 'bind'", Version20160323)
	whereFalse := mustCompile(t, "SELECT deviceId, metrics FROM 'dt/+/telemetry' WHERE metrics.temperature > 80 AND status = 'ok' OR startswith(fw, '2.')", Version20160323)
	inFalse := mustCompile(t, "SELECT * FROM 'dt/#' WHERE topic(2) IN ['a', 'b'] AND get(location, 'lat') > 50", Version20160323)
	if _, err := whereFalse.Eval(m); err != nil { // decode once
		t.Fatal(err)
	}
	for name, q := range map[string]*Query{"topic mismatch": topicMiss, "WHERE false": whereFalse, "IN false": inFalse} {
		var r Result
		allocs := testing.AllocsPerRun(100, func() { r, _ = q.Eval(m) })
		if r.Matched {
			t.Fatalf("%s: matched", name)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Eval, want 0", name, allocs)
		}
	}
}

func TestResultOutputShapes(t *testing.T) {
	m := &Message{Topic: "a", Payload: []byte(`{"x":1}`)}
	r, err := mustCompile(t, "SELECT VALUE missing FROM 'a'", DefaultVersion).Eval(m)
	if err != nil || !r.Matched || r.Output == nil || len(r.Output) != 0 {
		t.Fatalf("SELECT VALUE of Undefined: %+v %v; want matched, empty non-nil output", r, err)
	}
	r, err = mustCompile(t, "SELECT x FROM 'a' WHERE x = 2", DefaultVersion).Eval(m)
	if err != nil || r.Matched || r.Output != nil {
		t.Fatalf("WHERE false: %+v %v; want unmatched, nil output", r, err)
	}
	r, err = mustCompile(t, "SELECT x FROM 'b'", DefaultVersion).Eval(m)
	if err != nil || r.Matched || r.Output != nil {
		t.Fatalf("topic mismatch: %+v %v", r, err)
	}
}
