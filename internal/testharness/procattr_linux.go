//go:build linux

package testharness

import "syscall"

// serverProcAttr makes the kernel kill a started server when the test
// process dies without reaching Main's cleanup (a panic, a go test timeout,
// SIGKILL), so no orphaned clickhouse-server keeps running on the machine.
//
// Pdeathsig fires when the OS thread that started the child exits. The Go
// runtime does not end its threads unless a goroutine exits while locked to
// one (runtime.LockOSThread), which this package never does.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
