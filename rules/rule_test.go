package rules

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/thingpipe/thingpipe/rules/iotsql"
)

func mustParse(t *testing.T, body string) *File {
	t.Helper()
	f, err := ParseFile("r.yaml", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestResolveForAnotherPartition(t *testing.T) {
	f, err := ReadFile("../deploy/rules/bind.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Resolve(Env{Account: "111122223333", Region: "cn-north-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(r.Payload.Actions[0].Sqs.QueueUrl); got != "https://sqs.cn-north-1.amazonaws.com.cn/111122223333/thingpipe-binding" {
		t.Errorf("queue URL = %s", got)
	}
	if got := aws.ToString(r.Payload.Actions[0].Sqs.RoleArn); got != "arn:aws-cn:iam::111122223333:role/thingpipe-iot-rules" {
		t.Errorf("role = %s", got)
	}
	// The file itself is untouched: it still serves every environment.
	if got := aws.ToString(f.Payload.Actions[0].Sqs.QueueUrl); !strings.Contains(got, "{{account}}") {
		t.Errorf("the file was modified: %s", got)
	}
}

func TestResolveErrorsNameFieldAndPosition(t *testing.T) {
	f := mustParse(t, `
name: r
sql: "SELECT a FROM 'x' WHERE"
actions:
  - kinesis: {streamName: "s-{{stage}}", partitionKey: "${topic(}", roleArn: r}
`)
	_, err := f.Resolve(LocalEnv)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"r.yaml: rule r: actions[0].kinesis.streamName: unknown placeholder {{stage}}",
		`r.yaml: rule r: actions[0].kinesis.partitionKey: substitution template "${topic(}": 1:`,
		"r.yaml: rule r: sql: 1:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := mustParse(t, "name: r\nsql: SELECT 1 FROM 'a'\n").Resolve(Env{Region: "us-east-1"}); err == nil {
		t.Error("resolved without an account")
	}
}

func TestEvalRendersPerMessageWithoutChangingTheRule(t *testing.T) {
	r, err := mustParse(t, `
name: r
sql: SELECT v FROM 'd/+/t'
actions:
  - kinesis: {streamName: "s-${topic(2)}", partitionKey: "${topic(2)}", roleArn: "arn:{{partition}}:iam::{{account}}:role/x"}
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/q", roleArn: r}
errorAction:
  republish: {topic: "errors/${topic(2)}", roleArn: r}
`).Resolve(LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, thing := range []string{"a", "b"} {
		inv, err := r.Eval(&iotsql.Message{Topic: "d/" + thing + "/t", Payload: []byte(`{"v":1}`)})
		if err != nil || inv == nil {
			t.Fatalf("%s: %v %v", thing, inv, err)
		}
		k := inv.Actions[0].Kinesis
		if aws.ToString(k.PartitionKey) != thing || aws.ToString(k.StreamName) != "s-"+thing ||
			aws.ToString(k.RoleArn) != "arn:aws:iam::123456789012:role/x" {
			t.Errorf("%s: rendered %s", thing, DescribeAction(inv.Actions[0]))
		}
		if got := aws.ToString(inv.ErrorAction.Republish.Topic); got != "errors/"+thing {
			t.Errorf("%s: error action topic %s", thing, got)
		}
		if string(inv.Output) != `{"v":1}` {
			t.Errorf("output %s", inv.Output)
		}
	}
	if got := aws.ToString(r.Payload.Actions[0].Kinesis.PartitionKey); got != "${topic(2)}" {
		t.Errorf("the rule's template was overwritten: %s", got)
	}
}

func TestDisabledRuleNeverMatches(t *testing.T) {
	r, err := mustParse(t, "name: r\nsql: SELECT * FROM 'a'\nruleDisabled: true\n").Resolve(LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := r.Eval(&iotsql.Message{Topic: "a", Payload: []byte(`{}`)})
	if inv != nil || err != nil {
		t.Errorf("disabled rule: %v %v", inv, err)
	}
}
