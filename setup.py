from setuptools import find_packages, setup

setup(
    name="recsys-spark",
    version="0.1.0",
    description="Nightly LSTM next-item recommendations on Spark, Petastorm, PyTorch and Horovod",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["recsys_spark", "recsys_spark.*", "training", "training.*",
                                    "jobs", "jobs.*"]),
    package_data={"recsys_spark": ["log4j2.properties"]},
    data_files=[("share/recsys-spark/conf", ["conf/base.yaml", "conf/local.yaml", "conf/standalone.yaml",
                                              "conf/cluster.yaml"])],
    # Ranges that admit both tested stacks; each stack's exact pins are its constraints file
    # (card: constraints.txt, current: constraints-current.txt; README "Stack").
    install_requires=[
        "pyspark>=4.0,<4.4",
        "pyarrow>=14.0.2",
        "numpy>=1.26",
        "pandas>=2.2,<3",  # PySpark 4.3 warns that it does not fully support pandas 3
        "torch>=2.13",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "psutil>=5.9",
        "cloudpickle>=2",
        "optuna>=4,<6",  # recsys tune
    ],
    extras_require={
        # The card stack's training feed: Petastorm stops at pyarrow 14. Horovod is installed by
        # scripts/install_horovod.sh (it needs a patched C++17 build).
        "card": ["petastorm==0.12.1"],
        "dev": ["pytest>=8", "chispa==0.12.0", "hypothesis>=6",
                "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0",
                # A real HiveServer2 JDBC client (pyspark's hive-jdbc jar) for the cluster tests.
                "JPype1==1.7.1"],
    },
    entry_points={"console_scripts": ["recsys=recsys_spark.cli:main"]},
)
