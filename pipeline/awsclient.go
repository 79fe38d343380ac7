package pipeline

import (
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// AWSHTTPClient returns the HTTP client for the stages' AWS clients: the SDK's default client
// (dial and TLS timeouts, connection pooling) plus a response timeout per attempt, so a call on a
// stalled connection fails and is retried instead of hanging (see AWSConfig.ResponseTimeout).
// The error it produces is a transport error: the SDK retries it, ReportAWSErrors reports it and
// IsUnavailable classifies it as the dependency being unavailable.
func AWSHTTPClient(c AWSConfig) aws.HTTPClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.ResponseHeaderTimeout = c.ResponseTimeout.D()
	})
}
