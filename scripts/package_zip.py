"""Write dist/recsys_spark.zip: the importable packages for spark-submit --py-files."""
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("recsys_spark", "training")


def main(target: str = "dist/recsys_spark.zip") -> None:
    out = ROOT / target
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            for path in sorted((ROOT / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".properties"):
                    archive.write(path, path.relative_to(ROOT))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
