from dogclf.cli import main

main()
