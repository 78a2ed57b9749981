package sim

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkPostSequential is one client posting new entries one after another: every post waits
// for its own fsync. Run with -benchtime=2000x for the backlog of the issue.
func BenchmarkPostSequential(b *testing.B) {
	e := startSim(b, b.TempDir(), Config{})
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.client.Post(ctx, entry(fmt.Sprintf("seq-%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
}

// BenchmarkPostParallel is many concurrent posters (as the worker's per-SCB concurrency):
// their entries share fsyncs.
func BenchmarkPostParallel(b *testing.B) {
	e := startSim(b, b.TempDir(), Config{})
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.client.Post(ctx, entry(fmt.Sprintf("par-%d", n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
}
