// Package vrrp is the VRRP engine of vipd.
package vrrp
