#!/usr/bin/env bash
# Builds target/deb/berth_<version>_<arch>.deb with dpkg-deb alone: /usr/bin/berth, the
# hardened berth.service, a default /etc/berth/berth.toml (root /var/lib/berth), the shipped
# templates under /usr/share/berth/templates, the man page, the changelog and docs/. Packages the release build, or
# $BERTH_BIN when set (the tests package the binary they built). Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/deb}"
bin="${BERTH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked >&2
  bin=target/release/berth
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
umask 022

install -D -m 0755 "$bin" "$stage/usr/bin/berth"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/berth"
install -D -m 0644 packaging/deb/berth.service "$stage/lib/systemd/system/berth.service"
install -D -m 0644 packaging/deb/berth.toml "$stage/etc/berth/berth.toml"
mkdir -p "$stage/usr/share/berth"
cp -r templates "$stage/usr/share/berth/templates"
# Scripts keep their executable bit (hooks, and what they run); nothing is group-writable.
chmod -R u+rwX,go+rX,go-w "$stage/usr/share/berth"
find "$stage/usr/share/berth" -type f -exec grep -lq '^#!' {} \; -exec chmod 0755 {} \;
doc="$stage/usr/share/doc/berth"
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 CHANGELOG.md "$doc/CHANGELOG.md"
cp -r docs "$doc/docs"
chmod -R u+rwX,go+rX,go-w "$doc/docs"
mkdir -p "$stage/usr/share/man/man1"
"$bin" manpage | gzip -9n > "$stage/usr/share/man/man1/berth.1.gz"
chmod 0644 "$stage/usr/share/man/man1/berth.1.gz"
install -D -m 0644 packaging/deb/copyright "$doc/copyright"
sed "s/@VERSION@/$version/" packaging/deb/changelog | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -D -m 0644 packaging/deb/lintian-overrides "$stage/usr/share/lintian/overrides/berth"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  packaging/deb/control > "$stage/DEBIAN/control"
echo /etc/berth/berth.toml > "$stage/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/postrm "$stage/DEBIAN/"
(cd "$stage" && find usr lib etc -type f ! -path 'etc/*' -exec md5sum {} + > DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"

mkdir -p "$out"
deb="$out/berth_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
