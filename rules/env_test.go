package rules

import (
	"strings"
	"testing"
)

func TestEnvExpand(t *testing.T) {
	env := Env{Account: "111122223333", Region: "cn-north-1"}.WithDefaults()
	tests := []struct {
		in, want, err string
	}{
		{"arn:{{partition}}:iam::{{account}}:role/r", "arn:aws-cn:iam::111122223333:role/r", ""},
		{"https://sqs.{{ region }}.{{urlSuffix}}/{{account}}/q", "https://sqs.cn-north-1.amazonaws.com.cn/111122223333/q", ""},
		{"${topic(2)}", "${topic(2)}", ""},
		{"no placeholders", "no placeholders", ""},
		{"{{acount}}", "", `unknown placeholder {{acount}}`},
		{"{{}}", "", `unknown placeholder {{}}`},
	}
	for _, tt := range tests {
		got, err := env.Expand(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Expand(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestEnvDefaultsAndValidate(t *testing.T) {
	for region, want := range map[string]string{"us-east-1": "aws", "eu-west-3": "aws", "cn-northwest-1": "aws-cn", "us-gov-west-1": "aws-us-gov"} {
		if got := (Env{Region: region}).WithDefaults().Partition; got != want {
			t.Errorf("partition of %s = %s, want %s", region, got, want)
		}
	}
	if err := (Env{Account: "12345", Region: "us-east-1"}).Validate(); err == nil || !strings.Contains(err.Error(), "account") {
		t.Errorf("short account: %v", err)
	}
	if err := (Env{Account: "123456789012"}).Validate(); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("no region: %v", err)
	}
	if err := LocalEnv.Validate(); err != nil {
		t.Errorf("LocalEnv: %v", err)
	}
}
