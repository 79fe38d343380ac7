package moto

import (
	"context"
	"fmt"
	"net"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// SerializeDynamoDB makes clients built from cfg send one DynamoDB request at a time.
//
// moto does not apply a conditional write atomically: under concurrent requests two writes with the
// same condition (attribute_not_exists, version = :v) can both succeed, which real DynamoDB never
// allows (workers/internal/ddbitem's TestMotoNeedsSerializedWrites shows it). Serializing a process's
// DynamoDB calls makes moto behave like DynamoDB for that process; workers still interleave between
// calls (a read and the conditional write after it are separate calls), so the races the conditions
// guard against still happen. It cannot help across processes.
//
// A call waiting for its turn gives up when its context ends, so one call stuck on a stalled
// connection does not hold every other (readiness checks, calls with deadlines) past their deadlines.
func SerializeDynamoDB(cfg *aws.Config) {
	turn := make(chan struct{}, 1)
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("thingpipe.moto.serialize",
			func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetServiceID(ctx) != "DynamoDB" {
					return next.HandleDeserialize(ctx, in)
				}
				select {
				case turn <- struct{}{}:
				case <-ctx.Done():
					return middleware.DeserializeOutput{}, middleware.Metadata{}, fmt.Errorf("waiting for the serialized DynamoDB call ahead: %w", ctx.Err())
				}
				defer func() { <-turn }()
				return next.HandleDeserialize(ctx, in)
			}), middleware.After)
	})
}

// IsLoopbackEndpoint reports whether cfg sends every call to an endpoint on this machine, which is
// where an emulator such as moto runs; AWS itself never answers on loopback.
func IsLoopbackEndpoint(cfg aws.Config) bool {
	if cfg.BaseEndpoint == nil {
		return false
	}
	u, err := url.Parse(*cfg.BaseEndpoint)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
