package moto

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestIsLoopbackEndpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint *string
		want     bool
	}{
		{nil, false},
		{aws.String("http://127.0.0.1:5000"), true},
		{aws.String("http://127.3.4.5:5000"), true},
		{aws.String("http://localhost:4566"), true},
		{aws.String("http://[::1]:5000"), true},
		{aws.String("https://dynamodb.us-east-1.amazonaws.com"), false},
		{aws.String("http://10.0.0.5:5000"), false},
		{aws.String("::not a url"), false},
	} {
		if got := IsLoopbackEndpoint(aws.Config{BaseEndpoint: tc.endpoint}); got != tc.want {
			t.Errorf("IsLoopbackEndpoint(%v) = %v, want %v", aws.ToString(tc.endpoint), got, tc.want)
		}
	}
}
