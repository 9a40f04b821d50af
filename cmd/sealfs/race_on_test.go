//go:build race

package main

// raceBuild is set when the tests run under the race detector: the binary
// they drive is then built with it too, so a data race in the server or
// the mount fails the test that provoked it.
const raceBuild = true
