//go:build !linux

package testharness

import "syscall"

// serverProcAttr has no parent-death signal outside Linux: a server started
// by a test process that crashes must be stopped by hand there.
func serverProcAttr() *syscall.SysProcAttr { return nil }
