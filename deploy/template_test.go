package deploy

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTemplateIntrinsics(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want any
	}{
		{"ref", "v: !Ref Queue", map[string]any{"Ref": "Queue"}},
		{"getatt scalar", "v: !GetAtt Queue.Arn", map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}},
		{"getatt nested attribute", "v: !GetAtt Db.Endpoint.Address", map[string]any{"Fn::GetAtt": []any{"Db", "Endpoint.Address"}}},
		{"getatt sequence", "v: !GetAtt [Queue, Arn]", map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}},
		{"sub", `v: !Sub "${AWS::Region}-${!Literal}"`, map[string]any{"Fn::Sub": "${AWS::Region}-${!Literal}"}},
		{"nested", `v: !Not [!Equals [!Select [0, !Split [",", !Ref X]], ""]]`, map[string]any{"Fn::Not": []any{
			map[string]any{"Fn::Equals": []any{
				map[string]any{"Fn::Select": []any{0, map[string]any{"Fn::Split": []any{",", map[string]any{"Ref": "X"}}}}},
				""}}}}},
		{"condition", "v: !Condition IsProd", map[string]any{"Condition": "IsProd"}},
		{"long form", `v: {"Fn::GetAtt": ["Q", "Arn"]}`, map[string]any{"Fn::GetAtt": []any{"Q", "Arn"}}},
		{"plain scalars", "v: [true, 2, '3', x]", []any{true, 2, "3", "x"}},
		{"alias", "a: &x {k: 1}\nv: *x", map[string]any{"k": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTemplate([]byte(tt.src))
			if err != nil {
				t.Fatalf("parseTemplate: %v", err)
			}
			if diff := cmp.Diff(tt.want, got["v"]); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTemplateErrorsNameThePosition(t *testing.T) {
	tests := []struct {
		name, src, wantMsg string
		wantLine           int
	}{
		{"unknown tag", "a: 1\nv: !Reff Queue", "unknown CloudFormation tag !Reff", 2},
		{"duplicate key", "v: 1\nw: 2\nv: 3", `duplicate key "v"`, 3},
		{"bad getatt", "x:\n  v: !GetAtt Queue", "is not Resource.Attribute", 2},
		{"merge key", "a: &x {k: 1}\nv:\n  <<: *x", "merge keys", 3},
		{"not a mapping", "- a\n- b", "not a mapping", 1},
		{"bad yaml", "v: [", "", 0},
		{"empty", "", "empty template", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTemplate([]byte(tt.src))
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("error = %v, want a *TemplateError", err)
			}
			if te.Line != tt.wantLine || !strings.Contains(te.Msg, tt.wantMsg) {
				t.Errorf("error = %v (line %d), want line %d and %q", err, te.Line, tt.wantLine, tt.wantMsg)
			}
		})
	}
}

func TestParseTemplateBoundsNesting(t *testing.T) {
	src := "v: " + strings.Repeat("[", 200) + strings.Repeat("]", 200)
	if _, err := parseTemplate([]byte(src)); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("error = %v, want nested too deeply", err)
	}
}

func FuzzParseTemplate(f *testing.F) {
	f.Add(Template())
	f.Add([]byte("v: !GetAtt a.b\nw: !Sub [x, {a: !Ref b}]"))
	f.Add([]byte("a: &x [*x]"))
	f.Fuzz(func(t *testing.T, src []byte) {
		tmpl, err := parseTemplate(src)
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TemplateError", err)
			}
			return
		}
		// Whatever parses must survive the rest of the pipeline without panicking.
		_, _ = templateParameters(tmpl)
		_, _ = Audit(src)
	})
}

// The template declares exactly the names of names.go, and its outputs are exactly Outputs' fields.
func TestTemplateMatchesTheConstantsAndOutputs(t *testing.T) {
	tmpl, err := parseTemplate(Template())
	if err != nil {
		t.Fatal(err)
	}
	nameProp := map[string]string{
		"AWS::SQS::Queue": "QueueName", "AWS::Kinesis::Stream": "Name", "AWS::DynamoDB::Table": "TableName",
		"AWS::SNS::Topic": "TopicName", "AWS::IAM::Role": "RoleName", "AWS::IoT::Policy": "PolicyName",
	}
	var got []string
	for id, r := range tmpl["Resources"].(map[string]any) {
		res := r.(map[string]any)
		typ := res["Type"].(string)
		prop, ok := nameProp[typ]
		if !ok {
			continue
		}
		name, ok := res["Properties"].(map[string]any)[prop].(string)
		if !ok {
			t.Errorf("%s (%s) has no literal %s: other packages rely on fixed names", id, typ, prop)
			continue
		}
		got = append(got, typ+" "+name)
	}
	sort.Strings(got)
	want := []string{
		"AWS::SQS::Queue " + ProvisioningQueue, "AWS::SQS::Queue " + BindingQueue, "AWS::SQS::Queue " + RuleErrorsQueue,
		"AWS::SQS::Queue " + ProvisioningDLQ, "AWS::SQS::Queue " + BindingDLQ, "AWS::SQS::Queue " + AlertingDLQ, "AWS::SQS::Queue " + ArchivalDLQ,
		"AWS::Kinesis::Stream " + TelemetryStream,
		"AWS::DynamoDB::Table " + DevicesTable, "AWS::DynamoDB::Table " + BindingsTable, "AWS::DynamoDB::Table " + AlertsTable, "AWS::DynamoDB::Table " + LeasesTable,
		"AWS::SNS::Topic " + AlertsTopic, "AWS::SNS::Topic " + EventsTopic,
		"AWS::IAM::Role " + IotRulesRole, "AWS::IAM::Role " + WorkersRole,
		"AWS::IoT::Policy " + DevicePolicy, "AWS::IoT::Policy " + AppPolicy,
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("named resources (-names.go +template):\n%s", diff)
	}

	params, err := templateParameters(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := resolveParameters(params, nil)
	if err != nil {
		t.Fatalf("the template's defaults do not satisfy its own constraints: %v", err)
	}
	if defaults["ArchiveBucketName"] != DefaultArchiveBucket || defaults["TelemetryShardCount"] != "2" {
		t.Errorf("defaults %v disagree with names.go", defaults)
	}

	var outKeys []string
	for k := range tmpl["Outputs"].(map[string]any) {
		outKeys = append(outKeys, k)
	}
	var fieldKeys []string
	for k := range (&Outputs{}).outputFields() {
		fieldKeys = append(fieldKeys, k)
	}
	sort.Strings(outKeys)
	sort.Strings(fieldKeys)
	if diff := cmp.Diff(fieldKeys, outKeys); diff != "" {
		t.Errorf("template outputs (-Outputs fields +template):\n%s", diff)
	}
}

func TestResolveParameters(t *testing.T) {
	tmpl, err := parseTemplate(Template())
	if err != nil {
		t.Fatal(err)
	}
	params, err := templateParameters(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		overrides map[string]string
		wantErr   string // ParameterError.Name, "" for success
	}{
		{"defaults", nil, ""},
		{"production", map[string]string{"ArchiveBucketName": "thingpipe-archive-123456789012-eu-west-1",
			"AlertEmails": "ops@example.com,oncall@example.com", "TelemetryShardCount": "8", "WorkerPrincipalService": "ec2.amazonaws.com"}, ""},
		{"unknown", map[string]string{"Nope": "1"}, "Nope"},
		{"too many shards", map[string]string{"TelemetryShardCount": "501"}, "TelemetryShardCount"},
		{"fraction is a number", map[string]string{"MaxReceiveCount": "2.5"}, ""},
		{"not a number", map[string]string{"MaxReceiveCount": "NaN"}, "MaxReceiveCount"},
		{"versioning value", map[string]string{"ArchiveVersioning": "On"}, "ArchiveVersioning"},
		{"bucket pattern anchors the whole value", map[string]string{"ArchiveBucketName": "ok-name/../x"}, "ArchiveBucketName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveParameters(params, tt.overrides)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("resolveParameters: %v", err)
				}
				if len(got) != len(params) {
					t.Errorf("resolved %d parameters, template has %d", len(got), len(params))
				}
				for k, v := range tt.overrides {
					if got[k] != v {
						t.Errorf("%s = %q, want %q", k, got[k], v)
					}
				}
				return
			}
			var pe *ParameterError
			if !errors.As(err, &pe) || pe.Name != tt.wantErr {
				t.Errorf("error = %v, want a ParameterError naming %s", err, tt.wantErr)
			}
		})
	}
}
