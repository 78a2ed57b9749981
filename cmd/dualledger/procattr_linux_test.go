package main

import (
	"os/exec"
	"syscall"
)

// childOfTest makes a process the test starts die with the test binary (the parent-death
// signal), so that a test binary killed by its timeout leaves no worker or server running.
// SIGKILL, as a kill -9 of the test would be to its children; the processes under test are built
// to survive that.
func childOfTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
