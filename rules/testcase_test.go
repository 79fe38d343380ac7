package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultRuleSetTestsPass(t *testing.T) {
	results, err := RunTests("../deploy/rules")
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 8 {
		t.Errorf("only %d cases", len(results))
	}
	for _, r := range results {
		if !r.Passed() {
			t.Errorf("%s: %s:\n  %s", r.File, r.Name, strings.Join(r.Failures, "\n  "))
		}
	}
}

// A failing run must say what differs, readably; the golden file is what people see.
func TestFailingCasesExplainThemselves(t *testing.T) {
	results, err := RunTests("testdata/failing")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range results {
		if r.Passed() {
			t.Errorf("case %q passed; every case in testdata/failing must fail", r.Name)
		}
		fmt.Fprintf(&b, "FAIL %s\n", r.Name)
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "    %s\n", f)
		}
	}
	golden(t, "failing.golden", b.String())
}

func TestTestFileErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"no expect", "cases:\n- name: a\n  topic: a/b\n", `cases[0].expect: missing in case "a"`},
		{"unknown field", "cases:\n- name: a\n  topic: a/b\n  expected: []\n", `unknown field "expected"`},
		{"no cases", "cases: []\n", "no cases"},
		{"topic filter", "cases:\n- name: a\n  topic: a/+\n  expect: []\n", "is a topic filter"},
		{"missing message file", "cases:\n- name: a\n  messageFile: nope.json\n  expect: []\n", "nope.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name, body string) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write("r.yaml", "name: r\nsql: SELECT * FROM 'a/b'\n")
			write("x.test.yaml", tt.body)
			_, err := RunTests(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParseTestFile(f *testing.F) {
	b, err := os.ReadFile("../deploy/rules/default.test.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"cases":[{"name":"a","topic":"a/b","payload":{"x":1},"expect":[{"rule":"r","actions":[{"sqs":{}}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := ParseTestFile("f.yaml", data)
		if err != nil {
			return
		}
		for _, c := range tf.Cases {
			if c.Name == "" || (c.Expect == nil && c.ExpectError == "") {
				t.Fatalf("an invalid case was accepted: %+v", c)
			}
		}
	})
}
