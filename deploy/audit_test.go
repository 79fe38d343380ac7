package deploy

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestAuditFindsNothingInTheTemplate(t *testing.T) {
	findings, err := Audit(Template())
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	for _, f := range findings {
		t.Errorf("finding: %s", f)
	}
}

// The fixture is deliberately insecure: the audit must report each of its problems, and must be
// able to fail (every rule fires at least once).
func TestAuditReportsAnInsecureTemplate(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "insecure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	findings, err := Audit(src)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var lines []string
	rules := map[string]bool{}
	for _, f := range findings {
		lines = append(lines, f.String())
		rules[f.Rule] = true
	}
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "insecure.findings")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("findings differ from %s (-want +got):\n%s", golden, diff)
	}
	for _, r := range []string{RuleUnencrypted, RulePublicBucket, RuleWildcardAction, RuleWildcardResource,
		RuleUnscopedResource, RuleNegation, RulePublicPrincipal, RuleIoTIdentity, RuleDevicePolicy, RuleManagedPolicy} {
		if !rules[r] {
			t.Errorf("rule %s never fired on the insecure fixture", r)
		}
	}
}

// Each single change that weakens the real template must be caught: the template is mutated one
// way at a time and audited.
func TestAuditCatchesEachWeakeningOfTheTemplate(t *testing.T) {
	tests := []struct {
		name, old, new, wantRule string
	}{
		{"queue without SSE", "      QueueName: thingpipe-binding-dlq\n      MessageRetentionPeriod: 1209600\n      SqsManagedSseEnabled: true\n",
			"      QueueName: thingpipe-binding-dlq\n      MessageRetentionPeriod: 1209600\n", RuleUnencrypted},
		{"topic without KMS", "      TopicName: thingpipe-events\n      KmsMasterKeyId: alias/aws/sns\n", "      TopicName: thingpipe-events\n", RuleUnencrypted},
		{"stream without encryption", "        EncryptionType: KMS\n", "        EncryptionType: NONE\n", RuleUnencrypted},
		{"table without SSE", "        - AttributeName: leaseKey\n          KeyType: HASH\n      SSESpecification:\n        SSEEnabled: true\n",
			"        - AttributeName: leaseKey\n          KeyType: HASH\n", RuleUnencrypted},
		{"bucket without encryption", "              SSEAlgorithm: AES256\n", "              SSEAlgorithm: none\n", RuleUnencrypted},
		{"bucket public", "        RestrictPublicBuckets: true\n", "        RestrictPublicBuckets: false\n", RulePublicBucket},
		{"wildcard action", "                  - kinesis:PutRecords\n", "                  - kinesis:Put*\n", RuleWildcardAction},
		{"wildcard resource", "                Resource: !GetAtt LeasesTable.Arn\n", "                Resource: \"*\"\n", RuleWildcardResource},
		{"bucket-wide archive", "${ArchiveBucket.Arn}/telemetry/*", "arn:aws:s3:::*", RuleWildcardResource},
		{"foreign resource", "                  - !GetAtt ProvisioningQueue.Arn\n                  - !GetAtt BindingQueue.Arn\n                  - !GetAtt RuleErrorsQueue.Arn\n",
			"                  - !GetAtt ProvisioningQueue.Arn\n                  - arn:aws:sqs:us-east-1:123456789012:other\n                  - !GetAtt RuleErrorsQueue.Arn\n", RuleUnscopedResource},
		{"device connects as anyone", "client/${!iot:Connection.Thing.ThingName}\"\n            Condition:", "client/*\"\n            Condition:", RuleDevicePolicy},
		{"device publishes anywhere", "topic/dt/${!iot:Connection.Thing.ThingName}/*", "topic/${!iot:Connection.Thing.ThingName}/*", RuleDevicePolicy},
		{"app publishes for anyone", "topic/app/${!cognito-identity.amazonaws.com:sub}/bind", "topic/app/*/bind", RuleIoTIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := string(Template())
			if strings.Count(src, tt.old) != 1 {
				t.Fatalf("the template has %d occurrences of %q, want 1", strings.Count(src, tt.old), tt.old)
			}
			src = strings.Replace(src, tt.old, tt.new, 1)
			findings, err := Audit([]byte(src))
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			for _, f := range findings {
				if f.Rule == tt.wantRule {
					return
				}
			}
			t.Errorf("no %s finding; findings: %v", tt.wantRule, findings)
		})
	}
}

// rolePermissions renders each Allow statement of a role's inline policies as "action resource".
func rolePermissions(t *testing.T, tmpl map[string]any, role string) []string {
	t.Helper()
	res := tmpl["Resources"].(map[string]any)[role].(map[string]any)
	props := res["Properties"].(map[string]any)
	var out []string
	for _, p := range props["Policies"].([]any) {
		for _, st := range statements(p.(map[string]any)["PolicyDocument"]) {
			if st["Effect"] != "Allow" {
				t.Errorf("%s: statement with Effect %v", role, st["Effect"])
			}
			for _, a := range renderAll(st["Action"]) {
				for _, r := range renderAll(st["Resource"]) {
					out = append(out, a+" "+r)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func cross(actions []string, resources ...string) []string {
	var out []string
	for _, a := range actions {
		for _, r := range resources {
			out = append(out, a+" "+r)
		}
	}
	return out
}

// The roles grant exactly the calls AWS IoT rules and the workers make, on exactly these resources.
func TestRolesGrantExactlyWhatIsNeeded(t *testing.T) {
	tmpl, err := parseTemplate(Template())
	if err != nil {
		t.Fatal(err)
	}
	work := []string{"${ProvisioningQueue.Arn}", "${BindingQueue.Arn}"}
	dlqs := []string{"${ProvisioningDLQ.Arn}", "${BindingDLQ.Arn}", "${AlertingDLQ.Arn}", "${ArchivalDLQ.Arn}"}
	tables := []string{"${DevicesTable.Arn}", "${BindingsTable.Arn}", "${BindingsTable.Arn}/index/byUser", "${AlertsTable.Arn}", "${LeasesTable.Arn}"}
	var workers []string
	workers = append(workers, cross([]string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"}, work...)...)
	workers = append(workers, cross([]string{"sqs:SendMessage", "sqs:GetQueueUrl"}, dlqs...)...)
	workers = append(workers, cross([]string{"kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"}, "${TelemetryStream.Arn}")...)
	workers = append(workers, cross([]string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"}, tables...)...)
	workers = append(workers, "dynamodb:Scan ${LeasesTable.Arn}")
	// Readiness checks of `thingpipe run`: DescribeTable, GetTopicAttributes, HeadBucket.
	workers = append(workers, cross([]string{"dynamodb:DescribeTable"}, "${DevicesTable.Arn}", "${BindingsTable.Arn}", "${AlertsTable.Arn}", "${LeasesTable.Arn}")...)
	workers = append(workers, cross([]string{"sns:Publish", "sns:GetTopicAttributes"}, "${AlertsTopic}", "${EventsTopic}")...)
	workers = append(workers, "s3:ListBucket ${ArchiveBucket.Arn}")
	workers = append(workers, "s3:PutObject ${ArchiveBucket.Arn}/"+ArchivePrefix+"*")
	var rules []string
	rules = append(rules, cross([]string{"sqs:SendMessage"}, "${ProvisioningQueue.Arn}", "${BindingQueue.Arn}", "${RuleErrorsQueue.Arn}")...)
	rules = append(rules, cross([]string{"kinesis:PutRecord", "kinesis:PutRecords"}, "${TelemetryStream.Arn}")...)

	for role, want := range map[string][]string{"WorkersRole": workers, "IotRulesRole": rules} {
		sort.Strings(want)
		if diff := cmp.Diff(want, rolePermissions(t, tmpl, role)); diff != "" {
			t.Errorf("%s permissions (-want +got):\n%s", role, diff)
		}
	}
}
