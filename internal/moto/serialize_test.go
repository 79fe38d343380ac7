package moto

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
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

// TestSerializedCallGivesUpWithItsContext: a DynamoDB call queued behind one that hangs returns when
// its own context ends instead of waiting for its turn.
func TestSerializedCallGivesUpWithItsContext(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"TableNames":[]}`))
	}))
	defer srv.Close()
	defer close(release)
	cfg := aws.Config{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
	}
	SerializeDynamoDB(&cfg)
	db := dynamodb.NewFromConfig(cfg)
	go func() { _, _ = db.ListTables(context.Background(), &dynamodb.ListTablesInput{}) }()
	<-arrived // the first call holds the turn

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("queued call: %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("queued call still waiting for its turn after its context ended")
	}
	select {
	case <-arrived:
		t.Error("the queued call reached the server while another held the turn")
	default:
	}
}
