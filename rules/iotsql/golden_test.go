package iotsql

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// goldenCase is one case of testdata/*.json. Each case cites the reference page it comes from.
//
//   - sql + topic + payload: a whole rule, compared on Matched and the exact output text;
//   - expr: shorthand for "SELECT VALUE <expr> FROM 't'" on the payload;
//   - template: a substitution template rendered on the message.
type goldenCase struct {
	Name        string          `json:"name"`
	Source      string          `json:"source"`
	Version     string          `json:"version"`
	SQL         string          `json:"sql"`
	Expr        string          `json:"expr"`
	Template    string          `json:"template"`
	Topic       string          `json:"topic"`
	Payload     json.RawMessage `json:"payload"`
	PayloadText *string         `json:"payload_text"`
	ClientID    string          `json:"clientid"`
	Principal   string          `json:"principal"`
	AccountID   string          `json:"accountid"`
	TimestampMS int64           `json:"timestamp_ms"`
	// Expectations.
	Matched    *bool           `json:"matched"`
	Output     json.RawMessage `json:"output"`
	OutputText *string         `json:"output_text"`
	Undefined  bool            `json:"undefined"`
	Binary     bool            `json:"binary"`
	ErrNotJSON bool            `json:"err_not_json"`
	CompileErr string          `json:"compile_error"`
	Note       string          `json:"note"`
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	total := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []goldenCase
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range cases {
			total++
			t.Run(filepath.Base(f)+"/"+c.Name, func(t *testing.T) { runGolden(t, c) })
		}
	}
	t.Logf("%d golden cases", total)
}

func runGolden(t *testing.T, c goldenCase) {
	t.Helper()
	if c.Source == "" {
		t.Fatalf("case %q cites no source", c.Name)
	}
	v, err := ParseVersion(c.Version)
	if err != nil {
		t.Fatal(err)
	}
	topic := c.Topic
	if topic == "" {
		topic = "t"
	}
	m := &Message{Topic: topic, ClientID: c.ClientID, Principal: c.Principal, AccountID: c.AccountID,
		NewUUID: func() string { return "00000000-0000-4000-8000-000000000000" }}
	if c.TimestampMS != 0 {
		m.Timestamp = time.UnixMilli(c.TimestampMS)
	}
	switch {
	case c.PayloadText != nil:
		m.Payload = []byte(*c.PayloadText)
	case c.Payload != nil:
		m.Payload = c.Payload
	default:
		m.Payload = []byte("{}")
	}
	if c.Template != "" {
		tm, err := CompileTemplate(c.Template, v)
		if c.CompileErr != "" {
			checkCompileErr(t, err, c.CompileErr)
			return
		}
		if err != nil {
			t.Fatalf("compile template: %v", err)
		}
		render := tm.Render
		if c.SQL != "" { // a template of this rule: its SET variables are visible
			q, err := Compile(c.SQL, v)
			if err != nil {
				t.Fatalf("compile %q: %v", c.SQL, err)
			}
			render = func(m *Message) (string, error) { return q.Render(tm, m) }
		}
		got, err := render(m)
		if c.ErrNotJSON {
			if !errors.Is(err, ErrPayloadNotJSON) {
				t.Fatalf("want ErrPayloadNotJSON, got %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		if c.OutputText == nil || got != *c.OutputText {
			t.Fatalf("template %q\n got: %q\nwant: %q", c.Template, got, deref(c.OutputText))
		}
		return
	}
	sql := c.SQL
	if c.Expr != "" {
		sql = "SELECT VALUE " + c.Expr + " FROM '" + topic + "'"
	}
	q, err := Compile(sql, v)
	if c.CompileErr != "" {
		checkCompileErr(t, err, c.CompileErr)
		return
	}
	if err != nil {
		t.Fatalf("compile %q: %v", sql, err)
	}
	res, err := q.Eval(m)
	if c.ErrNotJSON {
		if !errors.Is(err, ErrPayloadNotJSON) {
			t.Fatalf("want ErrPayloadNotJSON, got %v (output %s)", err, res.Output)
		}
		return
	}
	if err != nil {
		t.Fatalf("eval %q: %v", sql, err)
	}
	wantMatched := true
	if c.Matched != nil {
		wantMatched = *c.Matched
	}
	if res.Matched != wantMatched {
		t.Fatalf("%q: matched = %v, want %v (output %s)", sql, res.Matched, wantMatched, res.Output)
	}
	if !wantMatched {
		if res.Output != nil {
			t.Fatalf("unmatched result has output %s", res.Output)
		}
		return
	}
	if res.Binary != c.Binary {
		t.Fatalf("binary = %v, want %v", res.Binary, c.Binary)
	}
	switch {
	case c.Undefined:
		if len(res.Output) != 0 {
			t.Fatalf("%q: want Undefined (empty output), got %s", sql, res.Output)
		}
	case c.OutputText != nil:
		if string(res.Output) != *c.OutputText {
			t.Fatalf("%q:\n got: %q\nwant: %q", sql, res.Output, *c.OutputText)
		}
	case c.Output != nil:
		var want bytes.Buffer
		if err := json.Compact(&want, c.Output); err != nil {
			t.Fatalf("bad expected output: %v", err)
		}
		if !bytes.Equal(res.Output, want.Bytes()) {
			t.Fatalf("%q:\n got: %s\nwant: %s", sql, res.Output, want.Bytes())
		}
	default:
		t.Fatalf("case %q has no expectation", c.Name)
	}
}

func checkCompileErr(t *testing.T, err error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want compile error containing %q, got %v", want, err)
	}
	if !bytes.Contains([]byte(e.Error()), []byte(want)) {
		t.Fatalf("compile error %q does not contain %q", e.Error(), want)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
