package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// recordSizes reports what one session costs in Redis: its record and its
// two index entries, as MEMORY USAGE counts them.
func recordSizes(ctx context.Context, rdb *redis.Client) (record, indexes int64, err error) {
	for _, pattern := range []string{"*:s", "*:ix"} {
		keys, err := rdb.Keys(ctx, pattern).Result()
		if err != nil {
			return 0, 0, err
		}
		if len(keys) == 0 {
			return 0, 0, fmt.Errorf("no %s keys", pattern)
		}
		var sum int64
		for _, k := range keys {
			n, err := rdb.MemoryUsage(ctx, k).Result()
			if err != nil {
				return 0, 0, err
			}
			sum += n
		}
		if pattern == "*:s" {
			record = sum / int64(len(keys))
		} else {
			indexes = sum / int64(len(keys)) * 2 // a user index and a sid index per session
		}
	}
	return record, indexes, nil
}

// sealedRecordLen is the length of a sealed session record in the Redis at addr.
func sealedRecordLen(ctx context.Context, addr string) (int, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "*:s").Result()
	if err != nil || len(keys) == 0 {
		return 0, fmt.Errorf("find a session record: %v (%d keys)", err, len(keys))
	}
	n, err := rdb.StrLen(ctx, keys[0]).Result()
	if err != nil {
		return 0, fmt.Errorf("session record length: %w", err)
	}
	return int(n), nil
}

// fill adds the session-shaped records from..to-1 (keys like a session's,
// a real sealed record's size), so lookups run against a keyspace of that
// size; unfill removes them again.
func fill(ctx context.Context, rdb *redis.Client, from, to int, value []byte) error {
	return fillerBatches(ctx, rdb, from, to, func(p redis.Pipeliner, key string) { p.Set(ctx, key, value, time.Hour) })
}

func unfill(ctx context.Context, rdb *redis.Client, from, to int) error {
	return fillerBatches(ctx, rdb, from, to, func(p redis.Pipeliner, key string) { p.Unlink(ctx, key) })
}

// fillerBatches pipelines one command per filler key, 10,000 at a time.
func fillerBatches(ctx context.Context, rdb *redis.Client, from, to int, cmd func(redis.Pipeliner, string)) error {
	const batch = 10_000
	for i := from; i < to; {
		pipe := rdb.Pipeline()
		for end := min(i+batch, to); i < end; i++ {
			cmd(pipe, fillerKey(i))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// fillerKey is the i-th filler record's key: spread like a session key's
// hash, and the same on every call so unfill finds it.
func fillerKey(i int) string {
	sum := sha256.Sum256([]byte("envoy-bff bench filler " + strconv.Itoa(i)))
	return "bff:{" + base64.RawURLEncoding.EncodeToString(sum[:]) + "}:s"
}

// memoryPerSession measures the memory store's heap per session: stored,
// and once a Check has read it (the store then keeps the opened record).
func memoryPerSession() (stored, read float64, err error) {
	cfg := session.DefaultConfig()
	cfg.EncryptionKeys = session.KeyList{{ID: "k1", Secret: "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}}
	cfg.HashKey = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	ring, err := session.NewKeyRing(cfg.EncryptionKeys, cfg.HashKey)
	if err != nil {
		return 0, 0, err
	}
	m := session.NewMemoryStore(cfg, ring, nil)
	const n = 20_000
	ids := make([]session.ID, n)
	tok := strings.Repeat("t", 800) // about a real JWT access token
	var before, created, opened runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx := context.Background()
	for i := range ids {
		if ids[i], err = session.NewID(rand.Reader); err != nil {
			return 0, 0, err
		}
		rec := &sessionpb.Session{Issuer: "https://idp.example.com", Subject: fmt.Sprintf("user-%d", i), Sid: fmt.Sprintf("sid-%d", i),
			AccessToken: tok, RefreshToken: tok[:400], IdToken: tok, TokenType: "Bearer",
			AccessTokenExpiresAtUnixMs: time.Now().Add(5 * time.Minute).UnixMilli(), ClaimsJson: []byte(`{"sub":"u","name":"A User","email":"a@example.com"}`)}
		if err := m.Create(ctx, ids[i], rec); err != nil {
			return 0, 0, err
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&created)
	for _, id := range ids {
		if _, err := m.GetShared(ctx, id); err != nil {
			return 0, 0, err
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&opened)
	runtime.KeepAlive(m)
	return float64(created.HeapAlloc-before.HeapAlloc) / n, float64(opened.HeapAlloc-before.HeapAlloc) / n, nil
}

// scaleRow is bff-redis's Check and the floor-redis floor, each over the
// run's rounds, with this many sessions stored (Redis's CPU per check in
// each result).
type scaleRow struct {
	sessions   int
	label      string // sessions, and how the row got there
	bff, floor []result
}

func printScale(w io.Writer, record, indexes int64, memStored, memRead float64, rows []scaleRow) {
	fmt.Fprintf(w, "\nScale: one session is %d B in Redis (record) + %d B (its two index entries); %.0f B of heap in the memory store, %.0f B once a Check has read it\n\n", record, indexes, memStored, memRead)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "sessions in Redis\tbff-redis checks/s\tCPU µs/check\tRedis CPU µs/check\tfloor-redis checks/s\tfloor-redis CPU µs/check\tvs floor: CPU\t")
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	for _, r := range rows {
		b, f := median(r.bff), median(r.floor)
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t%.0f\t%.1f\t%.2f×\t\n", r.label, b.perSec, us(b.cpuPerCheck), us(b.redisCPU), f.perSec, us(f.cpuPerCheck),
			float64(b.cpuPerCheck)/float64(f.cpuPerCheck))
	}
	tw.Flush()
}
