package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/server"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "auditlog test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSAndRequestLimits(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	storetest.Migrate(t, ch.Conn, ch.Database)
	certFile, keyFile, pool := selfSigned(t)
	reg := prometheus.NewRegistry()
	qc := query.DefaultConfig()
	qc.PageTokenKey = "tls-test-key-0123456789"
	svc, err := query.New(ch.Conn, qc, query.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	sc := server.DefaultConfig()
	sc.GRPCAddr, sc.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	sc.TLSCertFile, sc.TLSKeyFile = certFile, keyFile
	sc.Query, sc.Registry, sc.Ready = svc, reg, ch.Conn.Ping
	sc.Guard = auth.NewGuard(auth.Insecure(), auth.LimitsConfig{})
	srv, err := server.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })

	// HTTPS with the certificate; plain HTTP is refused.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := client.Get("https://" + srv.HTTPAddr() + "/v1/events?page_size=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("HTTPS list = %d", res.StatusCode)
	}
	if res, err := http.Get("http://" + srv.HTTPAddr() + "/healthz"); err == nil && res.StatusCode == http.StatusOK {
		t.Error("plain HTTP answered on a TLS listener")
	}
	// A request line far beyond any real filter is refused before parsing.
	res, err = client.Get("https://" + srv.HTTPAddr() + "/v1/events?q=" + url.QueryEscape(strings.Repeat("a", 100<<10)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB request line = %d, want 431", res.StatusCode)
	}

	// gRPC over TLS.
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := auditv1.NewAuditServiceClient(conn)
	if _, err := api.ListEvents(context.Background(), &auditv1.ListEventsRequest{PageSize: 1}); err != nil {
		t.Errorf("gRPC over TLS: %v", err)
	}
	// A request message beyond the limit is refused; a phrase beyond the
	// phrase limit is INVALID_ARGUMENT naming q.
	_, err = api.ListEvents(context.Background(), &auditv1.ListEventsRequest{Q: strings.Repeat("a", 300<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("300 KiB request = %v, want RESOURCE_EXHAUSTED", err)
	}
	_, err = api.ListEvents(context.Background(), &auditv1.ListEventsRequest{Q: strings.Repeat("actor:a ", 100)})
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "q:") {
		t.Errorf("100-term phrase = %v, want INVALID_ARGUMENT naming q", err)
	}
}
