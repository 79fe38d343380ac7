package deploy

// Names of the resources the template creates: the contracts of DESIGN.md. Other packages use these
// constants instead of spelling the names again; the template test checks that the template
// declares exactly these names.
const (
	// DefaultStackName is the CloudFormation stack Deploy manages unless Options.StackName says otherwise.
	DefaultStackName = "thingpipe"

	// SQS work queues, fed by AWS IoT topic rules.
	ProvisioningQueue = "thingpipe-provisioning"
	BindingQueue      = "thingpipe-binding"
	// RuleErrorsQueue receives what a rule's action could not deliver (every default rule's errorAction).
	RuleErrorsQueue = "thingpipe-rule-errors"

	// Dead-letter queues, one per stage; the Kinesis stages (alerting, archival) dead-letter to SQS too.
	ProvisioningDLQ = "thingpipe-provisioning-dlq"
	BindingDLQ      = "thingpipe-binding-dlq"
	AlertingDLQ     = "thingpipe-alerting-dlq"
	ArchivalDLQ     = "thingpipe-archival-dlq"

	// TelemetryStream is the Kinesis stream of device telemetry, partition key = thing name.
	TelemetryStream = "thingpipe-telemetry"
	// DefaultTelemetryShards is the stream's shard count unless the TelemetryShardCount parameter says otherwise.
	DefaultTelemetryShards = 2

	// DynamoDB tables, their key attributes and indexes.
	DevicesTable        = "thingpipe-devices"
	DevicesKey          = "thingName"
	BindingsTable       = "thingpipe-bindings"
	BindingsKey         = "thingName"
	BindingsByUserIndex = "byUser"
	BindingsUserKey     = "userId"
	AlertsTable         = "thingpipe-alerts"
	AlertsKey           = "alertKey"
	// AlertsTTLAttribute is the alerts table's time-to-live attribute (epoch seconds).
	AlertsTTLAttribute = "expiresAt"
	LeasesTable        = "thingpipe-leases"
	LeasesKey          = "leaseKey"

	// SNS topics: operator alerts (e-mail) and stage outcomes for apps.
	AlertsTopic = "thingpipe-alerts"
	EventsTopic = "thingpipe-events"

	// DefaultArchiveBucket is the archive bucket's name unless the ArchiveBucketName parameter overrides
	// it; bucket names are global, so production deployments override it.
	DefaultArchiveBucket = "thingpipe-archive"
	// ArchivePrefix is where archival writes; the workers role may write only under it.
	ArchivePrefix = "telemetry/"

	// IAM roles. The rule files in deploy/rules name IotRulesRole.
	IotRulesRole = "thingpipe-iot-rules"
	WorkersRole  = "thingpipe-workers"

	// AWS IoT policies for device certificates and for app (Cognito) identities.
	DevicePolicy = "thingpipe-device"
	AppPolicy    = "thingpipe-app"
)
