// Package workers documents thingpipe's four stages; each lives in its own package:
//
//   - provisioning: registry + presence events → device state in DynamoDB thingpipe-devices,
//     device.activated once per device;
//   - binding: binding requests → DynamoDB thingpipe-bindings, binding.completed / binding.rejected;
//   - alerting: telemetry → alert state in DynamoDB thingpipe-alerts, one SNS email per incident and
//     one when it resolves (SNS thingpipe-alerts), alert.firing / alert.resolved;
//   - archival: telemetry → gzip NDJSON batches in S3 thingpipe-archive.
//
// Each stage keeps its rules in pure types (unit-tested without AWS) and reaches AWS through small
// interfaces whose DynamoDB/SNS/S3 implementations are integration-tested against moto. Each exposes
// Handle(*message.Message) error for a watermill router: nil acks, an error for which
// events.IsPermanent is true dead-letters at once, any other error is retried.
package workers
