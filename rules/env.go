package rules

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Env is the AWS environment a rule set is resolved for. Rule files name their resources with
// placeholders ({{account}}, {{region}}, {{partition}}, {{urlSuffix}}) so that one file serves every
// account and region; resolving them yields the exact CreateTopicRule payload for that environment.
//
// The placeholders use double braces so they can never be confused with AWS IoT substitution
// templates (${expression}), which are evaluated per message, not per environment.
type Env struct {
	// Account is the 12-digit AWS account id. Required.
	Account string
	// Region is the AWS region, e.g. us-east-1. Required.
	Region string
	// Partition is the ARN partition (aws, aws-cn, aws-us-gov); empty means derived from Region.
	Partition string
	// URLSuffix is the domain of service endpoints (amazonaws.com, amazonaws.com.cn); empty means
	// derived from Partition.
	URLSuffix string
}

// LocalEnv is the environment used when no AWS account is involved: rule tests, `rules run`, and moto
// (which answers for this account in this region).
var LocalEnv = Env{Account: "123456789012", Region: "us-east-1"}

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// WithDefaults fills Partition and URLSuffix from Region.
func (e Env) WithDefaults() Env {
	if e.Partition == "" {
		e.Partition = PartitionFor(e.Region)
	}
	if e.URLSuffix == "" {
		e.URLSuffix = "amazonaws.com"
		if e.Partition == "aws-cn" {
			e.URLSuffix = "amazonaws.com.cn"
		}
	}
	return e
}

// Validate reports the first missing or malformed field.
func (e Env) Validate() error {
	switch {
	case !accountRE.MatchString(e.Account):
		return fmt.Errorf("env: account %q is not a 12-digit AWS account id", e.Account)
	case e.Region == "":
		return fmt.Errorf("env: region is empty")
	}
	return nil
}

// PartitionFor returns the ARN partition of a region.
func PartitionFor(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	}
	return "aws"
}

// Placeholders lists the placeholder names an Env resolves, for documentation and error messages.
var Placeholders = []string{"account", "region", "partition", "urlSuffix"}

// placeholderRE matches {{name}}, allowing spaces inside the braces.
var placeholderRE = regexp.MustCompile(`\{\{\s*([A-Za-z0-9_]*)\s*\}\}`)

func (e Env) value(name string) (string, bool) {
	switch name {
	case "account":
		return e.Account, true
	case "region":
		return e.Region, true
	case "partition":
		return e.Partition, true
	case "urlSuffix":
		return e.URLSuffix, true
	}
	return "", false
}

// Expand replaces every placeholder in s. An unknown placeholder is an error naming it.
func (e Env) Expand(s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	var bad []string
	out := placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		name := placeholderRE.FindStringSubmatch(m)[1]
		v, ok := e.value(name)
		if !ok {
			bad = append(bad, m)
			return m
		}
		return v
	})
	if len(bad) > 0 {
		sort.Strings(bad)
		return "", fmt.Errorf("unknown placeholder %s (known: {{%s}})", strings.Join(bad, ", "),
			strings.Join(Placeholders, "}}, {{"))
	}
	return out, nil
}
