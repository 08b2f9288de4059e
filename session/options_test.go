package session

import (
	"strings"
	"testing"
	"time"
)

func TestRedisOptions(t *testing.T) {
	t.Parallel()
	c := DefaultConfig().Redis
	tests := []struct {
		name             string
		url              string
		addr, user, pass string
		db               int
		tls, unix        bool
	}{
		{name: "plain", url: "redis://10.0.0.1:6380/2", addr: "10.0.0.1:6380", db: 2},
		{name: "auth_tls", url: "rediss://bff:s3cret@redis.example.com:6379/0", addr: "redis.example.com:6379", user: "bff", pass: "s3cret", tls: true},
		{name: "unix", url: "unix:///run/redis.sock?db=1", addr: "/run/redis.sock", db: 1, unix: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := c
			c.URL = tc.url
			o, err := redisOptions(c)
			if err != nil {
				t.Fatal(err)
			}
			if len(o.Addrs) != 1 || o.Addrs[0] != tc.addr || o.DB != tc.db || o.Username != tc.user || o.Password != tc.pass ||
				(o.TLSConfig != nil) != tc.tls || (o.Dialer != nil) != tc.unix {
				t.Errorf("options = %+v", o)
			}
			if o.DialTimeout != time.Second || o.ReadTimeout != 500*time.Millisecond || o.WriteTimeout != 500*time.Millisecond ||
				o.PoolSize != 32 || o.PoolTimeout != 500*time.Millisecond || !o.ContextTimeoutEnabled {
				t.Errorf("timeouts/pool = %v %v %v %d %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolSize, o.ContextTimeoutEnabled)
			}
		})
	}
	t.Run("sentinel_and_cluster", func(t *testing.T) {
		t.Parallel()
		c := c
		c.URL = "redis://u:pw@s1:26379/3?master_name=mymaster&addr=s2:26379&addr=s3:26379"
		o, err := redisOptions(c)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(o.Addrs, ",") != "s1:26379,s2:26379,s3:26379" || o.MasterName != "mymaster" || o.DB != 3 ||
			o.SentinelPassword != "pw" || o.Password != "pw" {
			t.Errorf("sentinel options = %+v", o)
		}
		c.URL = "redis://n1:7000?addr=n2:7001&addr=n3:7002"
		if o, err = redisOptions(c); err != nil || len(o.Addrs) != 3 || o.MasterName != "" {
			t.Errorf("cluster options = %+v, %v", o, err)
		}
		c.URL = "redis://n1:7000?addr=nope"
		if _, err := redisOptions(c); err == nil {
			t.Error("a bad addr was accepted")
		}
	})
	t.Run("bad_url_hides_password", func(t *testing.T) {
		t.Parallel()
		c := c
		c.URL = "redis://u:hunter2@h:notaport"
		if _, err := redisOptions(c); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("err = %v", err)
		}
	})
}
