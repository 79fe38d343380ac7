package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	iottypes "github.com/aws/aws-sdk-go-v2/service/iot/types"

	"github.com/thingpipe/thingpipe/internal/awstest"
)

// runCLI runs thingpipe with args and returns stdout, stderr and the exit code main would use.
func runCLI(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	err := cmd.Execute()
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		out.WriteString("ERR: " + err.Error())
	}
	return out.String(), code
}

func TestRulesEvalOutputShape(t *testing.T) {
	payload := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(payload, []byte(`{"temperature": 31, "userId": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"match from stdin", `{"temperature": 31}`, []string{"--payload", "-", "--topic", "dt/dev-1/telemetry",
			"--sql", "SELECT temperature, topic(2) AS thing FROM 'dt/+/telemetry' WHERE temperature > 30"},
			0, `{"matched":true,"output":{"temperature":31,"thing":"dev-1"}}` + "\n"},
		{"match from file, clientid", "", []string{"--payload", payload, "--topic", "a/b", "--clientid", "c-9",
			"--sql", "SELECT clientid() AS c FROM 'a/#'"},
			0, `{"matched":true,"output":{"c":"c-9"}}` + "\n"},
		{"where false", `{"temperature": 1}`, []string{"--payload", "-", "--topic", "dt/d/telemetry",
			"--sql", "SELECT * FROM 'dt/+/telemetry' WHERE temperature > 30"},
			0, `{"matched":false,"output":null}` + "\n"},
		{"other topic", "", []string{"--topic", "x/y", "--sql", "SELECT * FROM 'a/b'"},
			0, `{"matched":false,"output":null}` + "\n"},
		{"sql version", `{"a":1}`, []string{"--payload", "-", "--topic", "a", "--sql-version", "2016-03-23", "--sql", "SELECT a FROM 'a'"},
			0, `{"matched":true,"output":{"a":1}}` + "\n"},
		{"invalid sql", "", []string{"--topic", "a", "--sql", "SELECT FROM 'a'"}, 2, "ERR: invalid SQL at 1:8"},
		{"bad version", "", []string{"--topic", "a", "--sql-version", "2020-01-01", "--sql", "SELECT 1 FROM 'a'"}, 2, "ERR: --sql-version"},
		{"not json", "temperature=31", []string{"--payload", "-", "--topic", "a", "--sql", "SELECT temperature FROM 'a'"}, 2, "ERR: the payload is not JSON"},
		{"not json, select star", "hello", []string{"--payload", "-", "--topic", "a", "--sql", "SELECT * FROM 'a'"}, 2, "ERR: the payload is not JSON"},
		{"missing payload file", "", []string{"--payload", "/nonexistent", "--topic", "a", "--sql", "SELECT 1 FROM 'a'"}, 2, "ERR: reading the payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runCLI(t, tt.stdin, append([]string{"rules", "eval"}, tt.args...)...)
			if code != tt.code || !strings.HasPrefix(out, tt.want) {
				t.Fatalf("exit %d, output %q; want exit %d, output starting %q", code, out, tt.code, tt.want)
			}
			if code == 0 {
				var res map[string]json.RawMessage
				if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 2 {
					t.Errorf("output is not exactly {matched, output}: %s", out)
				}
			}
		})
	}
}

func TestRulesLintTestRunCommands(t *testing.T) {
	out, code := runCLI(t, "", "rules", "lint", "../../deploy/rules")
	if code != 0 || out != "" {
		t.Errorf("lint of the default rules: exit %d, %q", code, out)
	}
	out, code = runCLI(t, "", "rules", "lint", "../../rules/testdata/lint")
	if code != 1 || !strings.Contains(out, "testdata/lint/bad_name.yaml: bad-name: name \"bad-name\" must match") {
		t.Errorf("lint of bad rules: exit %d, %s", code, out)
	}
	out, code = runCLI(t, "", "rules", "test", "../../deploy/rules")
	if code != 0 || !strings.Contains(out, "rule test cases passed") || strings.Contains(out, "PASS") {
		t.Errorf("test: exit %d, %s", code, out)
	}
	out, code = runCLI(t, "", "rules", "test", "-v", "../../deploy/rules")
	if code != 0 || !strings.Contains(out, `kinesis → stream thingpipe-telemetry, partition key "dev-42"`) {
		t.Errorf("test -v: exit %d, %s", code, out)
	}
	out, code = runCLI(t, "", "rules", "test", "../../rules/testdata/failing")
	if code != 1 || !strings.Contains(out, `FAIL ../../rules/testdata/failing/wrong.test.yaml: wrong partition key and payload`) ||
		!strings.Contains(out, `actions[0].kinesis.partitionKey: want "dev-8", got "dev-9"`) {
		t.Errorf("failing test: exit %d, %s", code, out)
	}
	out, code = runCLI(t, "", "rules", "run", "../../deploy/rules", "../../testdata/messages")
	for _, want := range []string{
		"4 rules from ../../deploy/rules (account 123456789012, us-east-1), 4 messages",
		"rule thingpipe_bind matched",
		`{"requestId":"req-5c1e9a","thingName":"dev-42","userId":"user-7"}`,
		"sqs → queue https://sqs.us-east-1.amazonaws.com/123456789012/thingpipe-provisioning",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("run: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
}

// plan and apply against moto, end to end through the SDK's default chain (awstest points
// AWS_ENDPOINT_URL at moto); a region of their own keeps these rules apart from other tests'.
func TestRulesPlanApplyCommands(t *testing.T) {
	awstest.Endpoint(t)
	args := func(cmd string, extra ...string) []string {
		return append([]string{"rules", cmd, "../../deploy/rules", "--region", "ap-southeast-2"}, extra...)
	}
	out, code := runCLI(t, "", args("plan")...)
	if code != 0 || !strings.Contains(out, "Topic rules in account 123456789012, ap-southeast-2") ||
		!strings.Contains(out, "4 to create, 0 to replace, 0 to delete, 0 unchanged.") {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "", args("apply")...)
	if code != 0 || !strings.Contains(out, "created thingpipe_bind\n") || !strings.HasSuffix(out, "Applied.\n") {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "", args("plan", "--account", "123456789012")...)
	if code != 0 || !strings.Contains(out, "0 to create, 0 to replace, 0 to delete, 4 unchanged.") {
		t.Fatalf("plan after apply: exit %d\n%s", code, out)
	}
	out, code = runCLI(t, "", args("apply", "--prune")...)
	if code != 0 || !strings.HasSuffix(out, "Nothing to apply.\n") {
		t.Fatalf("second apply: exit %d\n%s", code, out)
	}
	// --prune deletes a retired thingpipe_ rule, and leaves another team's rule alone.
	cfg := awstest.Config(t)
	cfg.Region = "ap-southeast-2"
	client := iot.NewFromConfig(cfg)
	for _, name := range []string{"thingpipe_retired", "other_team_rule"} {
		if _, err := client.CreateTopicRule(t.Context(), &iot.CreateTopicRuleInput{RuleName: aws.String(name),
			TopicRulePayload: &iottypes.TopicRulePayload{Sql: aws.String("SELECT * FROM 'x'"), Actions: []iottypes.Action{}}}); err != nil {
			t.Fatal(err)
		}
	}
	out, code = runCLI(t, "", args("apply", "--prune")...)
	if code != 0 || !strings.Contains(out, "deleted thingpipe_retired\n") ||
		!strings.Contains(out, `? unmanaged  other_team_rule  (in AWS IoT, no rule file; kept: not under --prune-prefix "thingpipe_")`) ||
		strings.Contains(out, "deleted other_team_rule") {
		t.Fatalf("apply --prune: exit %d\n%s", code, out)
	}
	if _, err := client.GetTopicRule(t.Context(), &iot.GetTopicRuleInput{RuleName: aws.String("other_team_rule")}); err != nil {
		t.Errorf("other_team_rule after apply --prune: %v", err)
	}
	// Another account's rules differ in every ARN and queue URL: all four are replaced.
	out, code = runCLI(t, "", args("plan", "--account", "111122223333")...)
	if code != 0 || !strings.Contains(out, "0 to create, 4 to replace") ||
		!strings.Contains(out, `~ errorAction.sqs.queueUrl: "https://sqs.ap-southeast-2.amazonaws.com/123456789012/thingpipe-rule-errors" → "https://sqs.ap-southeast-2.amazonaws.com/111122223333/thingpipe-rule-errors"`) {
		t.Fatalf("plan for another account: exit %d\n%s", code, out)
	}
}
