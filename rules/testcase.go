package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

// TestFile is a rule test file (*.test.yaml next to the rules): cases of a message in and the rules
// that must match, with their actions, out.
type TestFile struct {
	// Env is the environment the rules are resolved for; default LocalEnv (123456789012, us-east-1).
	Env   *TestEnv   `json:"env,omitempty"`
	Cases []TestCase `json:"cases"`
}

// TestEnv is the environment of a test file.
type TestEnv struct {
	Account   string `json:"account"`
	Region    string `json:"region"`
	Partition string `json:"partition,omitempty"`
}

// TestCase is one message and what the rule set must do with it.
type TestCase struct {
	Name string `json:"name"`
	// MessageFile is a sample message file, relative to the test file; the inline message fields
	// (topic, clientId, payload, …) override its fields.
	MessageFile string `json:"messageFile,omitempty"`
	SampleMessage
	// Expect lists every rule that must match: exactly these, in any order. An empty list means no rule
	// may match. Required, so a case always asserts something.
	Expect *[]RuleExpect `json:"expect,omitempty"`
	// ExpectError, when set, is text the evaluation error must contain (e.g. a payload that is not JSON).
	ExpectError string `json:"expectError,omitempty"`
}

// RuleExpect is what one matched rule must do.
type RuleExpect struct {
	Rule string `json:"rule"`
	// Output, when set, is the exact SELECT result.
	Output json.RawMessage `json:"output,omitempty"`
	// Actions, when set, are the rule's actions in order, each in AWS's shape with templates rendered,
	// e.g. {"kinesis": {"partitionKey": "dev-42"}, "payload": {...}}. Only the fields named are compared;
	// payload, when present, is compared exactly with what the action sends.
	Actions *[]json.RawMessage `json:"actions,omitempty"`
	// ErrorAction, when set, is compared like an action (fields named only).
	ErrorAction json.RawMessage `json:"errorAction,omitempty"`
}

// CaseResult is the outcome of one test case.
type CaseResult struct {
	File        string
	Name        string
	Message     *SampleMessage
	Invocations []*Invocation
	// EvalErr is the evaluation error, if any (expected or not).
	EvalErr error
	// Failures are readable differences; none means the case passed.
	Failures []string
}

// Passed reports whether the case passed.
func (c CaseResult) Passed() bool { return len(c.Failures) == 0 }

// TestFilePaths lists the test files directly in dir, sorted.
func TestFilePaths(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && IsTestFile(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// ReadTestFile reads and checks a test file.
func ReadTestFile(path string) (*TestFile, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- a rule test file the user names on the command line
	if err != nil {
		return nil, err
	}
	return ParseTestFile(path, data)
}

// ParseTestFile checks a test file's contents (JSON or YAML, by path's extension).
func ParseTestFile(path string, data []byte) (*TestFile, error) {
	j, err := toJSON(path, data)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	var tf TestFile
	if err := strictDecode(j, &tf); err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	if len(tf.Cases) == 0 {
		return nil, &FileError{Path: path, Err: errors.New("no cases")}
	}
	for i, c := range tf.Cases {
		where := fmt.Sprintf("cases[%d]", i)
		switch {
		case c.Name == "":
			return nil, &FileError{Path: path, Err: &FieldError{where + ".name", "missing"}}
		case c.Expect == nil && c.ExpectError == "":
			return nil, &FileError{Path: path, Err: &FieldError{where + ".expect", fmt.Sprintf("missing in case %q: list the rules that must match ([] for none)", c.Name)}}
		}
	}
	return &tf, nil
}

// RunTests loads the rules in dir and runs every case of every test file in dir. An error means the
// tests could not run (bad rule or test file); failed cases are in the results.
func RunTests(dir string) ([]CaseResult, error) {
	files, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	paths, err := TestFilePaths(dir)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no test files (*.test.yaml, *.test.yml, *.test.json)", dir)
	}
	var results []CaseResult
	for _, p := range paths {
		tf, err := ReadTestFile(p)
		if err != nil {
			return nil, err
		}
		env := LocalEnv
		if tf.Env != nil {
			env = Env{Account: tf.Env.Account, Region: tf.Env.Region, Partition: tf.Env.Partition}
		}
		rules, err := ResolveAll(files, env)
		if err != nil {
			return nil, err
		}
		for i := range tf.Cases {
			r, err := runCase(p, env, rules, &tf.Cases[i])
			if err != nil {
				return nil, &FileError{Path: p, Err: fmt.Errorf("case %q: %w", tf.Cases[i].Name, err)}
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// caseMessage is the case's message: its message file with the inline fields laid over it.
func caseMessage(testPath string, c *TestCase) (*SampleMessage, error) {
	m := &SampleMessage{}
	if c.MessageFile != "" {
		p := c.MessageFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(testPath), p)
		}
		f, err := ReadSampleMessage(p)
		if err != nil {
			return nil, err
		}
		m = f
	}
	in := c.SampleMessage
	if in.Topic != "" {
		m.Topic = in.Topic
	}
	if in.ClientID != "" {
		m.ClientID = in.ClientID
	}
	if in.Principal != "" {
		m.Principal = in.Principal
	}
	if len(in.Payload) > 0 {
		m.Payload, m.PayloadText = in.Payload, nil
	}
	if in.PayloadText != nil {
		m.Payload, m.PayloadText = nil, in.PayloadText
	}
	if in.Timestamp != 0 {
		m.Timestamp = in.Timestamp
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func runCase(path string, env Env, rules []*Rule, c *TestCase) (CaseResult, error) {
	res := CaseResult{File: path, Name: c.Name}
	msg, err := caseMessage(path, c)
	if err != nil {
		return res, err
	}
	res.Message = msg
	invs, evalErr := Evaluate(rules, msg.Message(env))
	res.Invocations, res.EvalErr = invs, evalErr
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	switch {
	case c.ExpectError != "" && evalErr == nil:
		fail("expected an evaluation error containing %q, got none", c.ExpectError)
	case c.ExpectError != "" && !strings.Contains(evalErr.Error(), c.ExpectError):
		fail("expected an evaluation error containing %q, got: %v", c.ExpectError, evalErr)
	case c.ExpectError == "" && evalErr != nil:
		fail("evaluation failed: %v", evalErr)
	}
	if c.Expect == nil {
		return res, nil
	}
	known := map[string]bool{}
	for _, r := range rules {
		known[r.Name] = true
	}
	got := map[string]*Invocation{}
	for _, inv := range invs {
		got[inv.Rule.Name] = inv
	}
	wanted := map[string]bool{}
	for _, want := range *c.Expect {
		wanted[want.Rule] = true
		inv, ok := got[want.Rule]
		switch {
		case !known[want.Rule]:
			fail("rule %s: no such rule in the rule set", want.Rule)
			continue
		case !ok:
			fail("rule %s: expected to match, did not", want.Rule)
			continue
		}
		for _, d := range compareInvocation(want, inv) {
			fail("rule %s: %s", want.Rule, d)
		}
	}
	for _, inv := range invs {
		if !wanted[inv.Rule.Name] {
			fail("rule %s: matched, not expected (output %s)", inv.Rule.Name, inv.Output)
		}
	}
	return res, nil
}

func compareInvocation(want RuleExpect, inv *Invocation) []string {
	var out []string
	if len(want.Output) > 0 {
		w, err := decodeGeneric(want.Output)
		g, gerr := decodeGeneric(inv.Output)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("output: bad expectation: %v", err))
		case gerr != nil:
			out = append(out, fmt.Sprintf("output: want %s, got %q (not JSON)", show(w), inv.Output))
		default:
			out = append(out, prefixAll("output", jsonDiff("", w, g, false))...)
		}
	}
	if want.Actions != nil {
		wa := *want.Actions
		if len(wa) != len(inv.Actions) {
			out = append(out, fmt.Sprintf("actions: want %d, got %d", len(wa), len(inv.Actions)))
		}
		for i := 0; i < len(wa) && i < len(inv.Actions); i++ {
			p := fmt.Sprintf("actions[%d]", i)
			out = append(out, compareAction(p, wa[i], inv.Actions[i], inv.Output, true)...)
		}
	}
	if len(want.ErrorAction) > 0 {
		if inv.ErrorAction == nil {
			out = append(out, "errorAction: expected, the rule has none")
		} else {
			out = append(out, compareAction("errorAction", want.ErrorAction, *inv.ErrorAction, nil, false)...)
		}
	}
	return out
}

func prefixAll(prefix string, diffs []string) []string {
	for i, d := range diffs {
		if strings.HasPrefix(d, "(top)") {
			diffs[i] = prefix + strings.TrimPrefix(d, "(top)")
		} else {
			diffs[i] = prefix + "." + d
		}
	}
	return diffs
}

// compareAction compares an expected action (a subset of AWS's shape, plus "payload") with a rendered
// action and, when withPayload, the bytes it sends.
func compareAction(path string, raw json.RawMessage, got types.Action, output []byte, withPayload bool) []string {
	w, err := decodeGeneric(raw)
	obj, ok := w.(map[string]any)
	if err != nil || !ok {
		return []string{fmt.Sprintf("%s: bad expectation: must be an object like {\"sqs\": {...}}", path)}
	}
	var out []string
	if wp, ok := obj["payload"]; ok {
		delete(obj, "payload")
		if !withPayload {
			out = append(out, fmt.Sprintf("%s: bad expectation: payload is not checked here", path))
		} else {
			sent := ActionPayload(got, output)
			if g, err := decodeGeneric(sent); err == nil {
				out = append(out, prefixAll(path+".payload", jsonDiff("", wp, g, false))...)
			} else if ws, ok := wp.(string); !ok || ws != string(sent) {
				out = append(out, fmt.Sprintf("%s.payload: want %s, got %q", path, show(wp), sent))
			}
		}
	}
	if len(obj) != 1 {
		return append(out, fmt.Sprintf("%s: bad expectation: name exactly one action type, got %v", path, sortedKeys(obj)))
	}
	return append(out, prefixAll(path, jsonDiff("", obj, toGeneric(ActionJSON(got)), true))...)
}
