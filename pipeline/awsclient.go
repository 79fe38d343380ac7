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
//
// It also keeps more idle connections per host than the SDK's 10: a stage makes dozens of calls to
// one service at once (archival batches, SQS receivers and deletes, alert state), and past 10 the
// extra connections would be closed after each burst and dialled (with a TLS handshake) again.
// moto cannot show the difference: it closes every connection after one response.
func AWSHTTPClient(c AWSConfig) aws.HTTPClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.ResponseHeaderTimeout = c.ResponseTimeout.D()
		tr.MaxIdleConnsPerHost = maxIdleConnsPerHost
		tr.MaxIdleConns = maxIdleConnsPerHost * 2
	})
}

// maxIdleConnsPerHost bounds the idle connections kept per AWS endpoint.
const maxIdleConnsPerHost = 64
