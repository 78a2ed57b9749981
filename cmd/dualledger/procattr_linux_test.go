package main

import (
	"os/exec"
	"syscall"
)

// childOfTest makes a process the test starts die with the test binary (the parent-death
// signal), so that a test binary killed by its timeout leaves no worker or server running; the
// processes under test are built to survive a SIGKILL. The signal follows the OS thread that
// started the child, which lives as long as the binary: nothing here calls runtime.LockOSThread.
func childOfTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
