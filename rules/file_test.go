package rules

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iot/types"
)

func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		name, path, body, want string
	}{
		{"unknown top-level field", "r.json", `{"name":"a","sql":"SELECT 1 FROM 'a'","sqlVersion":"x"}`,
			`r.json: unknown field "sqlVersion" (known: name, actions, awsIotSqlVersion`},
		{"unknown action field", "r.yaml", "name: a\nsql: SELECT 1 FROM 'a'\nactions:\n- sqs:\n    queueURL: x\n",
			`r.yaml: actions[0].sqs: unknown field "queueURL" (known: queueUrl, roleArn, useBase64)`},
		{"unknown action type", "r.json", `{"name":"a","sql":"SELECT 1 FROM 'a'","actions":[{"sqs2":{}}]}`,
			`r.json: actions[0]: unknown field "sqs2"`},
		{"wrong type", "r.json", `{"name":"a","sql":"SELECT 1 FROM 'a'","actions":[{"sqs":{"useBase64":"yes"}}]}`,
			`r.json: actions[0].sqs.useBase64: must be true or false, not a string`},
		{"bad enum", "r.json", `{"name":"a","sql":"SELECT 1 FROM 'a'","actions":[{"sns":{"messageFormat":"XML"}}]}`,
			`r.json: actions[0].sns.messageFormat: "XML" is not one of RAW, JSON`},
		{"int out of range", "r.json", `{"name":"a","sql":"SELECT 1 FROM 'a'","actions":[{"republish":{"qos":99999999999}}]}`,
			`actions[0].republish.qos: 99999999999 is not an integer that fits 32 bits`},
		{"missing name", "r.json", `{"sql":"SELECT 1 FROM 'a'"}`, `r.json: name: missing`},
		{"name not a string", "r.json", `{"name":3,"sql":"SELECT 1 FROM 'a'"}`, `r.json: name: must be a string, not a number`},
		{"missing sql", "r.yaml", "name: a\n", `r.yaml: sql: missing`},
		{"not an object", "r.json", `[1]`, `r.json: must be an object, not an array`},
		{"bad json", "r.json", "{\n  \"name\": \"a\",,\n}", `r.json: invalid JSON at 2:15`},
		{"bad yaml", "r.yaml", "name: [a\n", `r.yaml: invalid YAML`},
		{"trailing json", "r.json", `{"name":"a","sql":"SELECT 1 FROM 'a'"} {}`, `more than one value`},
		{"union needs one member", "r.json", `{"name":"a","sql":"SELECT 1 FROM 'a'","actions":[{"iotSiteWise":{"putAssetPropertyValueEntries":[{"propertyValues":[{"value":{}}]}]}}]}`,
			`actions[0].iotSiteWise.putAssetPropertyValueEntries[0].propertyValues[0].value: must be an object with exactly one of`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile(tt.path, []byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tt.want)
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != tt.path {
				t.Errorf("error is not a *FileError for %s: %#v", tt.path, err)
			}
		})
	}
}

func TestParseFileYAMLAndJSONAgree(t *testing.T) {
	y := `
name: r1
description: d
sql: SELECT * FROM 'a/+'
awsIotSqlVersion: "2016-03-23"
ruleDisabled: false
actions:
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/q", roleArn: r, useBase64: true}
  - kinesis: {streamName: s, partitionKey: "${topic(2)}", roleArn: r}
  - republish: {topic: "out/${topic(2)}", qos: 1, roleArn: r}
  - dynamoDBv2: {putItem: {tableName: t}, roleArn: r}
  - iotSiteWise:
      roleArn: r
      putAssetPropertyValueEntries:
        - propertyAlias: /a
          propertyValues:
            - value: {doubleValue: "${temperature}"}
              timestamp: {timeInSeconds: "${floor(timestamp() / 1E3)}"}
errorAction:
  sns: {targetArn: "arn:{{partition}}:sns:{{region}}:{{account}}:e", roleArn: r, messageFormat: JSON}
`
	fy, err := ParseFile("r.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(fy.JSON())
	if err != nil {
		t.Fatal(err)
	}
	fj, err := ParseFile("r.json", j)
	if err != nil {
		t.Fatalf("re-parsing the JSON form: %v\n%s", err, j)
	}
	if !reflect.DeepEqual(fy.Payload, fj.Payload) || fy.Name != fj.Name {
		t.Errorf("YAML and its JSON form differ:\n%s", j)
	}
	if got := aws.ToBool(fy.Payload.Actions[0].Sqs.UseBase64); !got {
		t.Error("useBase64 lost")
	}
	v := fy.Payload.Actions[4].IotSiteWise.PutAssetPropertyValueEntries[0].PropertyValues[0].Value
	if d, ok := v.(*types.AssetPropertyVariantMemberDoubleValue); !ok || d.Value != "${temperature}" {
		t.Errorf("union value = %#v", v)
	}
	want := `{"name":"r1","actions":[{"sqs":{"queueUrl":"https://sqs.{{region}}.{{urlSuffix}}/{{account}}/q","roleArn":"r","useBase64":true}}`
	if !strings.HasPrefix(string(j), want) {
		t.Errorf("JSON form starts\n%s\nwant\n%s", j, want)
	}
	if !strings.Contains(string(j), `"value":{"doubleValue":"${temperature}"}`) {
		t.Errorf("union not in AWS shape: %s", j)
	}
}

func TestLoadDirDefaultRules(t *testing.T) {
	files, err := LoadDir("../deploy/rules")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		if f.Payload.ErrorAction == nil || f.Payload.ErrorAction.Sqs == nil ||
			!strings.HasSuffix(aws.ToString(f.Payload.ErrorAction.Sqs.QueueUrl), "/thingpipe-rule-errors") {
			t.Errorf("%s: no errorAction to thingpipe-rule-errors", f.Path)
		}
	}
	want := []string{"thingpipe_bind", "thingpipe_presence_connected", "thingpipe_telemetry", "thingpipe_thing_created"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("rules = %v, want %v", names, want)
	}
}

func TestLoadDirReportsEveryBadFileAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "name: same\nsql: SELECT 1 FROM 'a'\n")
	write("b.json", `{"name":"same","sql":"SELECT 1 FROM 'b'"}`)
	write("c.yml", "name: c\nsql: SELECT 1 FROM 'c'\nbogus: 1\n")
	write("d.test.yaml", "cases: []\n") // a test file, not a rule file
	write("notes.txt", "ignored")
	files, err := LoadDir(dir)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`b.json: rule "same" is also defined in`, `c.yml: unknown field "bogus"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if len(files) != 1 || files[0].Name != "same" {
		t.Errorf("files = %v", files)
	}
	if _, err := LoadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no rule files") {
		t.Errorf("empty dir: %v", err)
	}
}

func FuzzParseFile(f *testing.F) {
	for _, p := range []string{"../deploy/rules/bind.yaml", "../deploy/rules/telemetry.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	f.Add([]byte(`{"name":"a","sql":"SELECT 1 FROM 'a'","actions":[{"sqs":{"queueUrl":"x"}}]}`), false)
	f.Add([]byte(`{"name":"a","sql":"s","actions":[{"iotSiteWise":{"putAssetPropertyValueEntries":[{"propertyValues":[{"value":{"stringValue":"x"}}]}]}}]}`), false)
	f.Fuzz(func(t *testing.T, data []byte, yamlFile bool) {
		path := "f.json"
		if yamlFile {
			path = "f.yaml"
		}
		file, err := ParseFile(path, data)
		if err != nil {
			return
		}
		// Whatever parses must print in AWS's shape and parse back to the same payload.
		j, err := json.Marshal(file.JSON())
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseFile("again.json", j)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", j, err)
		}
		if !reflect.DeepEqual(canonicalPayload(file.Payload), canonicalPayload(again.Payload)) {
			t.Fatalf("round trip changed the payload: %s", j)
		}
	})
}
