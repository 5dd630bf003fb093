# A DAG of C compile steps and one link step, built with host tools only (no nixpkgs),
# so it builds offline. `size` sets the number of compile steps; unit i depends on
# units i-1 and i/2, which gives the DAG both depth and fan-in. `work` sets how many
# functions each unit compiles, so a compile step costs real compiler time. `toolchain`
# adds a chain of that many "toolchain" derivations every unit builds against (as a real
# flake builds against nixpkgs): an upstream cache can serve them while the team cache
# serves the repo's own paths. `refs = 1` makes the top output refer to every unit at run
# time, so a warm build fetches the whole closure, not one path. `incompressible_mb` and
# `compressible_mb` spread that much generated data (pseudo-random bytes; text of four
# letters, about 4x smaller under xz or zstd) evenly over the units' outputs, so a closure
# has a real size; the data is deterministic, so outputs stay reproducible.
# `timestamp = 1` adds a derivation whose output is a time stamp (not reproducible) and one
# built from it, which the top output copies.
{ size ? 20, work ? 200, toolchain ? 0, refs ? 0, incompressible_mb ? 0, compressible_mb ? 0
, timestamp ? 0, system ? builtins.currentSystem }:
let
  inherit (builtins) genList concatStringsSep map toString;

  mkDrv = name: script: extra: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" script ];
    PATH = "/usr/bin:/bin";
  } // extra);

  deps = i: if i == 0 then [ ] else if i == 1 then [ 0 ] else [ (i - 1) (i / 2) ];

  # Each toolchain layer refers to the one before it, so the last one's closure is all.
  toolchainLayers = genList (t:
    mkDrv "toolchain${toString t}" ''
      set -e
      mkdir -p $out/include
      echo '#define TOOLCHAIN_LAYERS ${toString (t + 1)}' > $out/include/toolchain.h
      ${if t == 0 then "" else "echo ${builtins.elemAt toolchainLayers (t - 1)} > $out/previous"}
    '' { }) toolchain;
  toolchainTop = if toolchain == 0 then null else builtins.elemAt toolchainLayers (toolchain - 1);
  toolchainFlags = if toolchainTop == null then "" else " -I${toolchainTop}/include";
  toolchainInclude = if toolchain == 0 then [ ] else [ "#include \"toolchain.h\"" ];

  # Bytes of each kind per unit (whole MiB totals, divided evenly).
  perUnit = mb: mb * 1048576 / size;
  randomBytes = perUnit incompressible_mb;
  textBytes = perUnit compressible_mb;
  # A build-time-only generator (its path never reaches a unit's output): xorshift64* bytes,
  # or lines of 63 letters from "acgt" (2 bits of entropy a byte).
  datagen = mkDrv "datagen" ''
    set -e
    mkdir -p $out/bin
    printf '%s' "$src" > datagen.c
    gcc -O2 datagen.c -o $out/bin/datagen
  '' {
    src = builtins.readFile ./datagen.c;
  };
  dataScript = i:
    if randomBytes == 0 && textBytes == 0 then "" else ''
      mkdir -p $out/share
      ${datagen}/bin/datagen ${toString i} ${toString randomBytes} bytes > $out/share/random.bin
      ${datagen}/bin/datagen ${toString i} ${toString textBytes} text > $out/share/text.txt
    '';

  # Enough arithmetic per unit that compiling it is real work, not just process start-up.
  mix = i: j: ''
    static unsigned long mix${toString j}(unsigned long x) {
      for (int k = 0; k < ${toString (8 + j)}; k++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x += ${toString (i * 1000 + j)}UL; }
      return x;
    }
  '';

  source = i: ''
    ${concatStringsSep "\n" (toolchainInclude ++ map (d: "#include \"unit${toString d}.h\"") (deps i))}
    #include "unit${toString i}.h"
    ${concatStringsSep "\n" (genList (mix i) work)}
    unsigned long unit${toString i}(unsigned long x) {
      unsigned long acc = x;
      ${concatStringsSep "\n" (genList (j: "acc = mix${toString j}(acc);") work)}
      ${concatStringsSep "\n" (map (d: "acc += unit${toString d}(acc);") (deps i))}
      return acc;
    }
  '';

  units = genList (i:
    let depUnits = map (d: builtins.elemAt units d) (deps i);
    in mkDrv "unit${toString i}" (''
      set -e
      mkdir -p $out/include $out/lib
      echo 'unsigned long unit${toString i}(unsigned long x);' > $out/include/unit${toString i}.h
      printf '%s' "$src" > unit.c
      gcc -O2 -c unit.c -o $out/lib/unit${toString i}.o ${concatStringsSep " " (map (u: "-I${u}/include") depUnits)} -I$out/include${toolchainFlags}
    '' + dataScript i) { src = source i; }) size;

  stamp = mkDrv "stamp" "date +%s%N > $out" { };
  usesStamp = mkDrv "uses-stamp" "sha256sum ${stamp} | cut -d' ' -f1 > $out" { };
  # Empty when off, so the top derivation is the same as without the parameter.
  stampScript = if timestamp == 0 then "" else "cat ${usesStamp} > $out/stamp.txt\n";

  main = ''
    #include <stdio.h>
    unsigned long unit${toString (size - 1)}(unsigned long x);
    int main(void) { printf("%lu\n", unit${toString (size - 1)}(1)); return 0; }
  '';
in
mkDrv "c-dag-${toString size}" (''
  set -e
  mkdir -p $out/bin
  printf '%s' "$main" > main.c
  gcc -O2 main.c ${concatStringsSep " " (map (u: "${u}/lib/*.o") units)} -o $out/bin/c-dag
  $out/bin/c-dag > $out/result.txt
  ${if refs == 0 then "" else "echo ${concatStringsSep " " units} > $out/units\n"}'' + stampScript) { inherit main; } // { toolchain = toolchainTop; }
