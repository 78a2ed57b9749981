package httpapi

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes that reads and prints with binary units ("1MiB", "512KiB",
// "1048576"). It satisfies pflag.Value, for flags such as --max-body.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
}

// String prints the size in the largest unit that divides it.
func (b ByteSize) String() string {
	for _, u := range byteUnits[:3] {
		if b > 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set parses a positive size: a number of bytes with an optional unit (KiB, MiB, GiB; K, M and
// G mean the same binary units).
func (b *ByteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return fmt.Errorf("invalid size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", s)
	}
	*b = ByteSize(n * mult)
	return nil
}

// Type names the flag's value type in help texts.
func (b *ByteSize) Type() string { return "size" }
