// Package apierr is the one translation of errors into gRPC statuses, used at
// the gRPC boundary of every RPC and, through grpc-gateway's status mapping,
// by REST (INVALID_ARGUMENT = 400, NOT_FOUND = 404, RESOURCE_EXHAUSTED = 429,
// UNAVAILABLE = 503, DEADLINE_EXCEEDED = 504).
//
// Known errors get precise codes and messages a caller can act on; anything
// else is logged in full here and returned as a generic INTERNAL, so no SQL,
// host name or stack ever reaches a client.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/query/filter"
)

// notFound is an expected outcome, not a failure.
type notFound struct{ what string }

func (e *notFound) Error() string { return e.what + " not found" }

// NotFound returns an error that maps to NOT_FOUND with the message
// "<what> not found". Use it for ids that do not exist and for ids outside
// the caller's scopes alike, so existence never leaks.
func NotFound(what string) error { return &notFound{what: what} }

// exhausted is a request refused because the service is at capacity.
type exhausted struct{ msg string }

func (e *exhausted) Error() string { return e.msg }

// Exhausted returns an error that maps to RESOURCE_EXHAUSTED (HTTP 429).
func Exhausted(format string, args ...any) error {
	return &exhausted{msg: fmt.Sprintf(format, args...)}
}

// InvalidArgument returns a *filter.Error, which maps to INVALID_ARGUMENT
// naming param, for request fields that are not filters (page_token, id…).
func InvalidArgument(param, format string, args ...any) error {
	return &filter.Error{Param: param, Problem: fmt.Sprintf(format, args...)}
}

// ClickHouse exception codes with a meaning for the caller.
const (
	chTimeoutExceeded = 159
	chTooSlow         = 160
	chMemoryLimit     = 241
	chTooManyQueries  = 202
	chTooManySimQuery = 203
	chNetworkError    = 210
	chSocketTimeout   = 209
	chAllReplicasLost = 279
)

// ToStatus turns err into a gRPC status error. ctx is the request's context:
// a cancelled request is CANCELED even when the driver reports something
// else. It returns nil for nil and passes status errors through.
func ToStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *filter.Error
	var nf *notFound
	var ex *exhausted
	var chErr *proto.Exception
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, fe.Error())
	case errors.As(err, &nf):
		return status.Error(codes.NotFound, nf.Error())
	case errors.As(err, &ex):
		return status.Error(codes.ResourceExhausted, ex.Error())
	case errors.Is(err, context.Canceled) || ctx.Err() == context.Canceled:
		return status.Error(codes.Canceled, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		return status.Error(codes.DeadlineExceeded, "request deadline exceeded")
	case errors.As(err, &chErr) && (chErr.Code == chTimeoutExceeded || chErr.Code == chTooSlow):
		return status.Error(codes.DeadlineExceeded, "query took longer than the server allows; narrow the filters (scope_id, since/until)")
	case errors.As(err, &chErr) && (chErr.Code == chMemoryLimit || chErr.Code == chTooManyQueries || chErr.Code == chTooManySimQuery):
		slog.WarnContext(ctx, "clickhouse refused a query", "err", err)
		return status.Error(codes.ResourceExhausted, "the database is overloaded; retry later or narrow the filters")
	case unavailable(err):
		slog.ErrorContext(ctx, "clickhouse unavailable", "err", err)
		return status.Error(codes.Unavailable, "the database is unavailable; retry later")
	}
	slog.ErrorContext(ctx, "internal error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// unavailable reports whether err means ClickHouse could not be reached.
func unavailable(err error) bool {
	var netErr net.Error
	var chErr *proto.Exception
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, clickhouse.ErrAcquireConnTimeout):
		return true
	case errors.As(err, &chErr):
		return chErr.Code == chNetworkError || chErr.Code == chSocketTimeout || chErr.Code == chAllReplicasLost
	}
	return false
}
