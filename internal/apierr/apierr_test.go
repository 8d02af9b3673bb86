package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/internal/apierr"
	"github.com/auditlog/auditlog/query/filter"
)

func TestToStatus(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	cases := []struct {
		ctx  context.Context
		err  error
		code codes.Code
		msg  string
	}{
		{bg, &filter.Error{Param: "q", Problem: `unknown key "acter" in term 2`}, codes.InvalidArgument, `q: unknown key "acter" in term 2`},
		{bg, fmt.Errorf("wrapped: %w", apierr.InvalidArgument("page_token", "altered")), codes.InvalidArgument, "page_token: altered"},
		{bg, apierr.NotFound("event x"), codes.NotFound, "event x not found"},
		{bg, apierr.Exhausted("busy"), codes.ResourceExhausted, "busy"},
		{cancelled, errors.New("read: connection reset"), codes.Canceled, "request cancelled"},
		{bg, fmt.Errorf("query: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "request deadline exceeded"},
		{bg, &proto.Exception{Code: 159, Message: "Timeout exceeded"}, codes.DeadlineExceeded, "query took longer than the server allows; narrow the filters (scope_id, since/until)"},
		{bg, fmt.Errorf("query: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), codes.Unavailable, "the database is unavailable; retry later"},
		{bg, errors.New("SELECT secret FROM somewhere failed at host ch-7"), codes.Internal, "internal error"},
		{bg, status.Error(codes.PermissionDenied, "kept"), codes.PermissionDenied, "kept"},
	}
	for _, c := range cases {
		st := status.Convert(apierr.ToStatus(c.ctx, c.err))
		if st.Code() != c.code || st.Message() != c.msg {
			t.Errorf("ToStatus(%v) = %v %q, want %v %q", c.err, st.Code(), st.Message(), c.code, c.msg)
		}
	}
	if apierr.ToStatus(bg, nil) != nil {
		t.Error("ToStatus(nil) != nil")
	}
}
