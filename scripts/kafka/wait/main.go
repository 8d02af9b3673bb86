// Command wait is the Go half of scripts/kafka/kafka.sh: it picks free ports
// for a new broker and waits until a started broker answers metadata
// requests, so the script needs neither kcat nor Kafka's own shell tools.
//
//	go run ./scripts/kafka/wait -free-ports 2
//	go run ./scripts/kafka/wait -brokers 127.0.0.1:9092 -pid 1234 -timeout 90s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

func main() {
	freePorts := flag.Int("free-ports", 0, "print this many free TCP ports on 127.0.0.1, space-separated, and exit")
	brokers := flag.String("brokers", "", "comma-separated `host:port` list to wait for")
	pid := flag.Int("pid", 0, "give up as soon as this process (the broker) has exited")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait for the broker")
	flag.Parse()

	var err error
	switch {
	case *freePorts > 0:
		err = printFreePorts(*freePorts)
	case *brokers != "":
		err = waitReady(strings.Split(*brokers, ","), *pid, *timeout)
	default:
		err = errors.New("want -free-ports N or -brokers host:port")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka wait:", err)
		os.Exit(1)
	}
}

// printFreePorts holds every listener open until all are picked, so the
// ports differ from each other.
func printFreePorts(n int) error {
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	fmt.Println(strings.Join(ports, " "))
	return nil
}

// waitReady polls until a metadata request lists at least one broker and a
// controller: a KRaft broker accepts connections before it has registered
// with its controller, and clients that come too early see no brokers.
func waitReady(brokers []string, pid int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var lastErr error
	for {
		// A new transport per attempt: kafka-go's transport remembers a
		// failed dial for a while, which added seconds to every start.
		transport := &kafka.Transport{DialTimeout: time.Second}
		client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 2 * time.Second, Transport: transport}
		if pid > 0 && syscall.Kill(pid, 0) != nil {
			return fmt.Errorf("broker process %d exited before it was ready (last error: %v)", pid, lastErr)
		}
		meta, err := client.Metadata(ctx, &kafka.MetadataRequest{})
		transport.CloseIdleConnections()
		if os.Getenv("KAFKA_WAIT_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "%s metadata: err=%v\n", time.Now().Format("15:04:05.000"), err)
		}
		switch {
		case err != nil:
			lastErr = err
		case len(meta.Brokers) == 0:
			lastErr = errors.New("metadata lists no broker yet")
		case meta.Controller.ID < 0:
			lastErr = errors.New("metadata names no controller yet")
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker %v not ready within %v: %v", brokers, timeout, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
