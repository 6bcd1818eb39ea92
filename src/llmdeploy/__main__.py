from llmdeploy.cli.app import main

main()
