//go:build !linux

package main

import "os/exec"

// childOfTest: only Linux has a parent-death signal; elsewhere a killed test binary may leave its
// children running.
func childOfTest(*exec.Cmd) {}
