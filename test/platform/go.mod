module github.com/envoy-bff/envoy-bff/test/platform

go 1.26.8

replace github.com/envoy-bff/envoy-bff => ../..
