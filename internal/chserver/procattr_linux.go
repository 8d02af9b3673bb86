//go:build linux

package chserver

import "syscall"

// procAttr puts the server in its own process group (so a Ctrl-C in a
// terminal reaches only its parent, which then stops it in order) and, when
// asked, makes the kernel kill it when the parent dies without cleaning up.
//
// Pdeathsig fires when the OS thread that started the child exits. The Go
// runtime does not end its threads unless a goroutine exits while locked to
// one (runtime.LockOSThread), which this package never does.
func procAttr(killWithParent bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if killWithParent {
		attr.Pdeathsig = syscall.SIGKILL
	}
	return attr
}
