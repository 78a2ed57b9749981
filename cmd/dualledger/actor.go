package main

import (
	"os"
	"os/user"
	"strconv"
	"strings"
)

// cliActor names the operator of a CLI act in the operator log: "cli:" and the OS user (USER of
// the environment run was given when the user database has no name for it). The database role
// the act runs under is recorded by the database itself.
func (a *app) cliActor() string {
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = a.getenv("USER")
	}
	if name == "" {
		name = "uid" + strconv.Itoa(os.Getuid())
	}
	// The log refuses control characters; a user name never has any, but be sure.
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, name)
	return "cli:" + name
}
