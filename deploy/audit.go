package deploy

import (
	"fmt"
	"sort"
	"strings"
)

// Finding is one security problem Audit found in a template.
type Finding struct {
	Resource string // logical ID of the resource
	Rule     string // one of the Rule* constants
	Detail   string
}

func (f Finding) String() string { return f.Resource + ": " + f.Rule + ": " + f.Detail }

// The rules Audit checks.
const (
	// RuleUnencrypted: a queue, topic, stream, table or bucket without encryption at rest.
	RuleUnencrypted = "unencrypted"
	// RulePublicBucket: a bucket without all four S3 public-access blocks.
	RulePublicBucket = "public-bucket"
	// RuleWildcardAction: an Allow statement with a wildcard action ("*", "sqs:*", "iot:*", "s3:Get*").
	RuleWildcardAction = "wildcard-action"
	// RuleWildcardResource: an Allow statement on "*" or on an ARN wildcard wider than a path under one
	// of the template's own resources.
	RuleWildcardResource = "wildcard-resource"
	// RuleUnscopedResource: an IAM Allow on a resource that is not one of the template's own.
	RuleUnscopedResource = "unscoped-resource"
	// RuleNegation: NotAction or NotResource in an Allow statement (allows everything else).
	RuleNegation = "negated-allow"
	// RulePublicPrincipal: a trust or resource policy that allows any principal.
	RulePublicPrincipal = "public-principal"
	// RuleIoTIdentity: an IoT policy resource not bound to the caller's identity (thing name or
	// Cognito identity) before any wildcard.
	RuleIoTIdentity = "iot-identity"
	// RuleDevicePolicy: the device policy lets a thing connect as another client id (or without the
	// iot:Connection.Thing.IsAttached condition, which ties the certificate to that thing) or use topics
	// other than its own dt/<thing>/..., or is missing.
	RuleDevicePolicy = "device-policy"
	// RuleManagedPolicy: an IAM role, user or group attaches an AWS managed policy, whose permissions
	// are broad and not written in this template (least privilege is checked only on what is).
	RuleManagedPolicy = "managed-policy"
)

// The IoT policy variables that bind a resource to the connected identity.
const (
	thingNameVar = "${iot:Connection.Thing.ThingName}"
	cognitoVar   = "${cognito-identity.amazonaws.com:sub}"
)

// Audit reads a CloudFormation template and reports what would weaken thingpipe's security: missing
// encryption at rest, public buckets, wildcard or foreign IAM permissions, public principals, IoT
// policies not bound to the caller's identity, and a device policy wider than "connect as yourself,
// publish under dt/<yourself>/". No findings means none of these; it is not a full policy analysis.
func Audit(template []byte) ([]Finding, error) {
	tmpl, err := parseTemplate(template)
	if err != nil {
		return nil, err
	}
	resources, _ := tmpl["Resources"].(map[string]any)
	if resources == nil {
		return nil, &TemplateError{Msg: "no Resources section"}
	}
	a := &auditor{resources: resources}
	names := make([]string, 0, len(resources))
	for name := range resources {
		names = append(names, name)
	}
	sort.Strings(names)
	sawDevicePolicy := false
	for _, name := range names {
		res, _ := resources[name].(map[string]any)
		typ, _ := res["Type"].(string)
		props, _ := res["Properties"].(map[string]any)
		if props == nil {
			props = map[string]any{}
		}
		a.name = name
		switch typ {
		case "AWS::SQS::Queue":
			if !isTrue(props["SqsManagedSseEnabled"]) && !nonEmpty(props["KmsMasterKeyId"]) {
				a.add(RuleUnencrypted, "queue has neither SqsManagedSseEnabled: true nor KmsMasterKeyId")
			}
		case "AWS::SNS::Topic":
			if !nonEmpty(props["KmsMasterKeyId"]) {
				a.add(RuleUnencrypted, "topic has no KmsMasterKeyId")
			}
		case "AWS::Kinesis::Stream":
			enc, _ := props["StreamEncryption"].(map[string]any)
			if enc == nil || enc["EncryptionType"] != "KMS" || !nonEmpty(enc["KeyId"]) {
				a.add(RuleUnencrypted, "stream has no StreamEncryption with EncryptionType KMS and a KeyId")
			}
		case "AWS::DynamoDB::Table":
			sse, _ := props["SSESpecification"].(map[string]any)
			if sse == nil || !isTrue(sse["SSEEnabled"]) {
				a.add(RuleUnencrypted, "table has no SSESpecification with SSEEnabled: true")
			}
		case "AWS::S3::Bucket":
			a.bucket(props)
		case "AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group":
			for _, arn := range renderAll(props["ManagedPolicyArns"]) {
				if strings.Contains(arn, ":iam::aws:policy/") {
					a.add(RuleManagedPolicy, fmt.Sprintf("attaches the AWS managed policy %q", arn))
				}
			}
			a.policy(props["AssumeRolePolicyDocument"], trustPolicy)
			pols, _ := props["Policies"].([]any)
			for _, p := range pols {
				pm, _ := p.(map[string]any)
				a.policy(pm["PolicyDocument"], identityPolicy)
			}
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy", "AWS::IAM::GroupPolicy":
			a.policy(props["PolicyDocument"], identityPolicy)
		case "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy":
			a.policy(props["PolicyDocument"], resourcePolicy)
		case "AWS::IoT::Policy":
			a.iotPolicy(props)
			if props["PolicyName"] == DevicePolicy {
				sawDevicePolicy = true
				a.devicePolicy(props)
			}
		}
	}
	if !sawDevicePolicy {
		a.name = "Resources"
		a.add(RuleDevicePolicy, "no AWS::IoT::Policy named "+DevicePolicy)
	}
	return a.findings, nil
}

type auditor struct {
	resources map[string]any
	name      string
	findings  []Finding
}

func (a *auditor) add(rule, detail string) {
	a.findings = append(a.findings, Finding{Resource: a.name, Rule: rule, Detail: detail})
}

func isTrue(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return strings.EqualFold(x, "true")
	}
	return false
}

// nonEmpty is a literal non-empty string or an intrinsic function (a reference CloudFormation resolves).
func nonEmpty(v any) bool {
	switch x := v.(type) {
	case string:
		return x != ""
	case map[string]any:
		return len(x) > 0
	}
	return false
}

func (a *auditor) bucket(props map[string]any) {
	encrypted := false
	enc, _ := props["BucketEncryption"].(map[string]any)
	rules, _ := enc["ServerSideEncryptionConfiguration"].([]any)
	for _, r := range rules {
		rm, _ := r.(map[string]any)
		def, _ := rm["ServerSideEncryptionByDefault"].(map[string]any)
		switch def["SSEAlgorithm"] {
		case "AES256", "aws:kms", "aws:kms:dsse":
			encrypted = true
		}
	}
	if !encrypted {
		a.add(RuleUnencrypted, "bucket has no BucketEncryption default (AES256, aws:kms or aws:kms:dsse)")
	}
	pab, _ := props["PublicAccessBlockConfiguration"].(map[string]any)
	for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
		if !isTrue(pab[k]) {
			a.add(RulePublicBucket, "PublicAccessBlockConfiguration."+k+" is not true")
		}
	}
}

type policyKind int

const (
	identityPolicy policyKind = iota // attached to a role: Allow must name this template's resources
	trustPolicy                      // a role's AssumeRolePolicyDocument
	resourcePolicy                   // bucket/queue/topic policy
)

func listOf(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	default:
		return []any{x}
	}
}

func statements(doc any) []map[string]any {
	dm, _ := doc.(map[string]any)
	var out []map[string]any
	for _, s := range listOf(dm["Statement"]) {
		if sm, ok := s.(map[string]any); ok {
			out = append(out, sm)
		}
	}
	return out
}

func (a *auditor) policy(doc any, kind policyKind) {
	for i, st := range statements(doc) {
		if st["Effect"] != "Allow" {
			continue
		}
		where := fmt.Sprintf("statement %d", i)
		if sid, ok := st["Sid"].(string); ok {
			where = "statement " + sid
		}
		if _, ok := st["NotAction"]; ok {
			a.add(RuleNegation, where+" allows NotAction")
		}
		if _, ok := st["NotResource"]; ok {
			a.add(RuleNegation, where+" allows NotResource")
		}
		for _, act := range renderAll(st["Action"]) {
			if strings.Contains(act, "*") {
				a.add(RuleWildcardAction, fmt.Sprintf("%s allows %q", where, act))
			}
		}
		if kind != identityPolicy {
			if publicPrincipal(st["Principal"]) && st["Condition"] == nil {
				a.add(RulePublicPrincipal, where+" allows any principal without a condition")
			}
			continue
		}
		for _, res := range renderAll(st["Resource"]) {
			switch {
			case strings.Contains(res, "*") && !a.pathUnderOwnResource(res):
				a.add(RuleWildcardResource, fmt.Sprintf("%s allows resource %q", where, res))
			case !a.referencesOwnResource(res):
				a.add(RuleUnscopedResource, fmt.Sprintf("%s allows resource %q, which is not a resource of this template", where, res))
			}
		}
	}
}

func publicPrincipal(p any) bool {
	switch x := p.(type) {
	case string:
		return x == "*"
	case map[string]any:
		for _, v := range x {
			for _, s := range renderAll(v) {
				if s == "*" {
					return true
				}
			}
		}
	}
	return false
}

// referencesOwnResource reports whether s names one of the template's resources (${Logical} or
// ${Logical.Attr}).
func (a *auditor) referencesOwnResource(s string) bool {
	for name := range a.resources {
		if strings.Contains(s, "${"+name+"}") || strings.Contains(s, "${"+name+".") {
			return true
		}
	}
	return false
}

// pathUnderOwnResource reports whether every wildcard in s comes after "<own resource>/", as in
// "${ArchiveBucket.Arn}/telemetry/*": a wildcard inside one resource, not across resources.
func (a *auditor) pathUnderOwnResource(s string) bool {
	prefix := s[:strings.Index(s, "*")]
	for name := range a.resources {
		for _, ref := range []string{"${" + name + "}", "${" + name + "."} {
			i := strings.Index(prefix, ref)
			if i < 0 {
				continue
			}
			end := strings.Index(prefix[i:], "}")
			if end >= 0 && strings.Contains(prefix[i+end:], "/") {
				return true
			}
		}
	}
	return false
}

func (a *auditor) iotPolicy(props map[string]any) {
	for i, st := range statements(props["PolicyDocument"]) {
		if st["Effect"] != "Allow" {
			continue
		}
		where := fmt.Sprintf("statement %d", i)
		for _, act := range renderAll(st["Action"]) {
			if strings.Contains(act, "*") {
				a.add(RuleWildcardAction, fmt.Sprintf("%s allows %q", where, act))
			}
		}
		if _, ok := st["NotAction"]; ok {
			a.add(RuleNegation, where+" allows NotAction")
		}
		if _, ok := st["NotResource"]; ok {
			a.add(RuleNegation, where+" allows NotResource")
		}
		for _, res := range renderAll(st["Resource"]) {
			if !boundToIdentity(res) {
				a.add(RuleIoTIdentity, fmt.Sprintf("%s allows %q, not bound to the caller's thing name or identity", where, res))
			}
		}
	}
}

// boundToIdentity: the resource contains an identity variable, and no wildcard comes before it.
func boundToIdentity(res string) bool {
	for _, v := range []string{thingNameVar, cognitoVar} {
		i := strings.Index(res, v)
		if i >= 0 && !strings.Contains(res[:i], "*") {
			return true
		}
	}
	return false
}

// devicePolicy checks the device policy's exact shape: connect only as itself, publish/receive
// only on dt/<thing>/..., subscribe only to dt/<thing>/... filters, nothing else.
func (a *auditor) devicePolicy(props map[string]any) {
	connects := false
	for i, st := range statements(props["PolicyDocument"]) {
		if st["Effect"] != "Allow" {
			continue
		}
		resources := renderAll(st["Resource"])
		for _, act := range renderAll(st["Action"]) {
			var want string
			switch act {
			case "iot:Connect":
				connects = true
				want = ":client/" + thingNameVar
				if !thingAttached(st["Condition"]) {
					a.add(RuleDevicePolicy, fmt.Sprintf("statement %d allows iot:Connect without the condition "+
						"iot:Connection.Thing.IsAttached: true (a certificate not attached to the thing could connect as it)", i))
				}
			case "iot:Publish", "iot:Receive", "iot:RetainPublish":
				want = ":topic/dt/" + thingNameVar + "/"
			case "iot:Subscribe":
				want = ":topicfilter/dt/" + thingNameVar + "/"
			default:
				a.add(RuleDevicePolicy, fmt.Sprintf("statement %d allows %q, which devices do not need", i, act))
				continue
			}
			for _, res := range resources {
				ok := strings.Contains(res, want)
				if act == "iot:Connect" {
					ok = strings.HasSuffix(res, want)
				}
				if !ok {
					a.add(RuleDevicePolicy, fmt.Sprintf("statement %d allows %s on %q; want only ...%s", i, act, res, want))
				}
			}
		}
	}
	if !connects {
		a.add(RuleDevicePolicy, "does not allow iot:Connect as the thing itself")
	}
}

// thingAttached reports whether a condition block requires iot:Connection.Thing.IsAttached to be true.
func thingAttached(cond any) bool {
	cm, _ := cond.(map[string]any)
	for _, op := range []string{"Bool", "StringEquals"} {
		m, _ := cm[op].(map[string]any)
		for _, v := range renderAll(m["iot:Connection.Thing.IsAttached"]) {
			if strings.EqualFold(v, "true") {
				return true
			}
		}
	}
	return false
}

// renderAll turns a template value into the strings it can stand for: lists are flattened, both
// branches of Fn::If are kept, references render as ${Name} / ${Name.Attr}, and Fn::Sub renders its
// text with ${!Literal} unescaped — so IoT policy variables read as AWS IoT sees them.
func renderAll(v any) []string {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, renderAll(e)...)
		}
		return out
	case map[string]any:
		if len(x) != 1 {
			return []string{fmt.Sprint(x)}
		}
		for k, arg := range x {
			switch k {
			case "Ref":
				if s, _ := arg.(string); s == "AWS::NoValue" {
					return nil
				}
				return []string{fmt.Sprintf("${%v}", arg)}
			case "Fn::GetAtt":
				parts := listOf(arg)
				ss := make([]string, len(parts))
				for i, p := range parts {
					ss[i] = fmt.Sprint(p)
				}
				return []string{"${" + strings.Join(ss, ".") + "}"}
			case "Fn::Sub":
				text := arg
				if l, ok := arg.([]any); ok && len(l) > 0 {
					text = l[0]
				}
				s, _ := text.(string)
				return []string{strings.ReplaceAll(s, "${!", "${")}
			case "Fn::Join":
				l, _ := arg.([]any)
				if len(l) != 2 {
					return []string{fmt.Sprint(x)}
				}
				sep, _ := l[0].(string)
				return []string{strings.Join(renderAll(l[1]), sep)}
			case "Fn::If":
				l, _ := arg.([]any)
				if len(l) != 3 {
					return []string{fmt.Sprint(x)}
				}
				return append(renderAll(l[1]), renderAll(l[2])...)
			}
			return []string{fmt.Sprintf("${%s}", k)}
		}
	}
	return []string{fmt.Sprint(v)}
}
